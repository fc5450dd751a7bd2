"""Prometheus metrics, one registry per app so each process (and each test) counts its own."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.domain.events import CreditsPosted, DomainEvent, PurchaseStatusChanged
from app.domain.model import LedgerKind

OPERATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Clients choose operation names; beyond this many distinct ones they count as "other".
MAX_OPERATION_NAMES = 200
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CREDIT_MOVEMENTS = {
    LedgerKind.GRANT: "granted",
    LedgerKind.SPEND: "spent",
    LedgerKind.REFUND: "refunded",
    LedgerKind.EXPIRY: "expired",
    LedgerKind.REVOCATION: "revoked",
}
# Support's adjustments, by direction: bonus lots granted, corrections taken back.
ADJUSTMENT_MOVEMENTS = ("adjusted", "corrected")


def movement_of(event: CreditsPosted) -> str:
    if event.kind is LedgerKind.ADJUSTMENT:
        return ADJUSTMENT_MOVEMENTS[0] if event.amount > 0 else ADJUSTMENT_MOVEMENTS[1]
    return CREDIT_MOVEMENTS[event.kind]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "creditgate_graphql_requests",
            "GraphQL operations by operation name, type and result type.",
            ["operation", "type", "result"],
            registry=r,
        )
        self.latency = Histogram(
            "creditgate_graphql_request_duration_seconds",
            "Time to execute a GraphQL operation.",
            ["operation", "type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.credits = {
            movement: Counter(
                f"creditgate_credits_{movement}",
                f"Credits {movement}, by tool (none outside generations) and bucket.",
                ["tool", "bucket"],
                registry=r,
            )
            for movement in (*CREDIT_MOVEMENTS.values(), *ADJUSTMENT_MOVEMENTS)
        }
        self.open_holds = Gauge(
            "creditgate_open_holds",
            "Holds not yet settled or released, in the whole database.",
            registry=r,
        )
        self.subscriptions = Gauge(
            "creditgate_websocket_subscriptions",
            "Active GraphQL subscriptions served by this process.",
            ["field"],
            registry=r,
        )
        self.in_flight = Gauge(
            "creditgate_http_requests_in_flight",
            "HTTP requests being served by this process (probes and metrics excluded).",
            registry=r,
        )
        self.purchases = Counter(
            "creditgate_pack_purchases",
            "Pack purchases moved to a status, by payment provider and status.",
            ["provider", "status"],
            registry=r,
        )
        self.payment_webhooks = Counter(
            "creditgate_payment_webhook_events",
            "Payment provider webhook events received, by provider, event type and outcome.",
            ["provider", "type", "outcome"],
            registry=r,
        )
        self._operation_names: set[str] = set()
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def operation_label(self, name: str | None) -> str:
        if not name:
            return "anonymous"
        if not OPERATION_NAME.fullmatch(name):
            return "other"
        if name not in self._operation_names:
            if len(self._operation_names) >= MAX_OPERATION_NAMES:
                return "other"
            self._operation_names.add(name)
        return name

    def observe_operation(self, name: str | None, kind: str, result: str, seconds: float) -> None:
        # ``labels()`` checks and converts every label under a lock: on each request that
        # was most of the observer's cost, so each (operation, type, result) keeps its pair
        # of children. Bounded: operation labels are (MAX_OPERATION_NAMES), types and
        # results are names from the schema.
        key = (self.operation_label(name), kind, result)
        children = self._children.get(key)
        if children is None:
            operation = key[0]
            children = (
                self.requests.labels(operation, kind, result),
                self.latency.labels(operation, kind),
            )
            self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def observe_events(self, events: Sequence[DomainEvent]) -> None:
        """After commit: count what was posted, so rolled-back work is never counted."""
        for event in events:
            if isinstance(event, PurchaseStatusChanged):
                self.purchases.labels(event.provider, event.status).inc()
            elif isinstance(event, CreditsPosted) and event.amount:
                movement = movement_of(event)
                tool = event.tool.value if event.tool else "none"
                self.credits[movement].labels(tool, event.bucket.value).inc(abs(event.amount))

    def count_subscriptions(self, field: str, count: Callable[[], int]) -> None:
        self.subscriptions.labels(field).set_function(count)

    def observe_webhook(self, provider: str, event_type: str, outcome: str) -> None:
        # Event types come from a verified provider event; unknown ones are bounded by the
        # provider's own list, and the outcome by the handler's.
        self.payment_webhooks.labels(provider, event_type[:64], outcome).inc()
