"""Prometheus metrics, one registry per app so each process (and each test) counts its own.

With ``creditgate serve --workers N`` every worker counts into prometheus-client's
multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set and cleaned by ``serve``) and a scrape
of any worker adds up all of them: counters and histograms are summed over every worker that
ran since the start, gauges of processes are summed over the live ones (``livesum``), and the
database-wide gauge is the most recent value written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

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


def multiprocess_directory() -> Path | None:
    """The multiprocess directory prometheus-client counts into in this process, if any.

    prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when it is imported, and picks
    its value class then; this says what it picked rather than what the environment says now.
    """
    if values.ValueClass is values.MutexValue:
        return None
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) if directory else None


def forget_dead_workers(directory: Path) -> list[int]:
    """Drop the live gauges of processes gone (a worker uvicorn replaced); their pids."""
    dead = []
    for path in directory.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if pid not in dead and not _alive(pid):
            dead.append(pid)
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Metrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            forget_dead_workers(multiprocess_dir)
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
            # Read from the database at scrape time by whichever worker is scraped.
            multiprocess_mode="mostrecent",
        )
        self.subscriptions = Gauge(
            "creditgate_websocket_subscriptions",
            "Active GraphQL subscriptions served (by all live workers of a serve).",
            ["field"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "creditgate_http_requests_in_flight",
            "HTTP requests being served (probes and metrics excluded), all live workers.",
            registry=r,
            multiprocess_mode="livesum",
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
        self.webhook_deliveries = Counter(
            "creditgate_webhook_deliveries",
            "Outgoing webhook delivery attempts by event type and outcome "
            "(delivered, retrying, failed).",
            ["event_type", "outcome"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "creditgate_webhook_delivery_latency_seconds",
            "From the commit of an event to its delivery being acknowledged, by event type.",
            ["event_type"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
            registry=r,
        )
        self.webhook_queue_depth = Gauge(
            "creditgate_webhook_queue_depth",
            "Outgoing webhook deliveries pending, in the whole database.",
            registry=r,
            # Whole-database values: the most recent worker's reading.
            multiprocess_mode="mostrecent",
        )
        self.webhook_oldest_pending = Gauge(
            "creditgate_webhook_oldest_pending_seconds",
            "Age of the oldest pending outgoing webhook delivery.",
            registry=r,
            # Whole-database values: the most recent worker's reading.
            multiprocess_mode="mostrecent",
        )
        self.webhook_endpoints_disabled = Counter(
            "creditgate_webhook_endpoints_disabled",
            "Webhook endpoints disabled after failing for 5 days.",
            registry=r,
        )
        self._operation_names: set[str] = set()
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._observed: dict[tuple[str | None, str, str], tuple[str, Counter, Histogram]] = {}

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

    def observe_operation(self, name: str | None, kind: str, result: str, seconds: float) -> str:
        """Count one operation and its duration; the label its name is counted under."""
        # ``labels()`` checks and converts every label under a lock: on each request that
        # was most of the observer's cost, so each (operation, type, result) keeps its pair
        # of children, and each name its label (no pattern match per request). Bounded:
        # only names that are their own label are remembered (MAX_OPERATION_NAMES); types
        # and results are names from the schema.
        found = self._observed.get((name, kind, result))
        if found is None:
            label = self.operation_label(name)
            key = (label, kind, result)
            children = self._children.get(key)
            if children is None:
                children = (
                    self.requests.labels(label, kind, result),
                    self.latency.labels(label, kind),
                )
                self._children[key] = children
            found = (label, *children)
            if name is None or label == name:
                self._observed[name, kind, result] = found
        label, counter, histogram = found
        counter.inc()
        histogram.observe(seconds)
        return label

    def observe_events(self, events: Sequence[DomainEvent]) -> None:
        """After commit: count what was posted, so rolled-back work is never counted."""
        for event in events:
            if isinstance(event, PurchaseStatusChanged):
                self.purchases.labels(event.provider, event.status).inc()
            elif isinstance(event, CreditsPosted) and event.amount:
                movement = movement_of(event)
                tool = event.tool.value if event.tool else "none"
                self.credits[movement].labels(tool, event.bucket.value).inc(abs(event.amount))

    def exposition(self) -> bytes:
        """The Prometheus text: this process's registry, or every worker's files added up."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        return generate_latest(registry)

    def count_subscriptions(self, fields: Sequence[str]) -> None:
        for field in fields:
            self.subscriptions.labels(field)  # shown as 0 before the first one

    def subscription_changed(self, field: str, delta: int) -> None:
        """A feed opened (+1) or closed (-1): counted as it happens, so that in multiprocess
        mode every worker's count is in its file (a gauge read by a function is not)."""
        self.subscriptions.labels(field).inc(delta)

    def observe_webhook(self, provider: str, event_type: str, outcome: str) -> None:
        # Event types come from a verified provider event; unknown ones are bounded by the
        # provider's own list, and the outcome by the handler's.
        self.payment_webhooks.labels(provider, event_type[:64], outcome).inc()
