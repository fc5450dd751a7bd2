"""A loopback stand-in for the few Stripe API endpoints creditgate calls, for the real SDK.

There is no stripe-mock on PyPI, so this is a real HTTP server (``http.server`` in a daemon
thread on a free 127.0.0.1 port) that answers the way Stripe does: form-encoded requests
with nested keys (``line_items[0][price_data][unit_amount]``), JSON objects with Stripe's id
prefixes, Stripe's error bodies (``resource_missing`` 404s), ``expires_at`` held to Stripe's
30-minute minimum, and idempotency keys replayed only with the same parameters.

    POST /v1/checkout/sessions              create (Idempotency-Key replays)
    GET  /v1/checkout/sessions              list (created[gte], limit, starting_after)
    GET  /v1/checkout/sessions/{id}         retrieve (expand[]=payment_intent embeds the PI)
    POST /v1/checkout/sessions/{id}/expire  expire an open session
    POST /v1/refunds                        refund a PaymentIntent's charge (idempotent)
    GET  /v1/refunds                        list (charge, limit, starting_after)
    GET  /v1/charges/{id}                   retrieve (expand[]=refunds: its newest 10 refunds)
    GET  /v1/disputes/{id}                  retrieve

Tests drive what the customer, the bank and the dashboard do with the controls (``pay``,
``start_async``, ``fail_async``, ``expire``, ``refund_charge``, ``open_dispute``,
``close_dispute``), make Stripe fail with ``fail_next``, read ``requests``, and sign
webhooks with ``signed_event``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

from app.clock import Clock

API_VERSION = stripe.api_version  # what the pinned SDK asks for
_KEY_PART = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    method: str
    path: str
    idempotency_key: str | None
    params: Mapping[str, Any]


class StripeFailure(Exception):
    """An API error answered the way Stripe answers it."""

    def __init__(self, status: int, type_: str, message: str, **fields: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **fields}}


def _not_found(kind: str, object_id: str) -> StripeFailure:
    return StripeFailure(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param="id",
    )


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's nested form keys (``a[b][0][c]=v``, ``expand[]=x``) as dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if part == "":  # ``expand[]``: append
                node.setdefault("\0", []).append(value)
                break
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if set(node) == {"\0"}:
        return list(node["\0"])
    items = {key: _listify(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


class FakeStripe:
    """Stripe's state for one test: sessions, intents, charges, refunds, disputes."""

    def __init__(self, *, secret_key: str = "sk_test_fake", clock: Clock | None = None) -> None:
        self.secret_key = secret_key
        self._clock = clock
        self._lock = threading.Lock()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        # The decoded form each session was created with, for assertions.
        self.checkout_params: dict[str, dict[str, Any]] = {}
        self.requests: list[LoggedRequest] = []
        self._idempotent: dict[str, tuple[str, str, dict[str, Any], int, dict[str, Any]]] = {}
        self._failures_left = 0
        self._failure_status = 500
        self._hold: threading.Event | None = None
        self.checkout_held = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- server -------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def _answer(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                query = body if method == "POST" else url.query
                params = decode_form(parse_qsl(query, keep_blank_values=True))
                status, answer = fake._handle(
                    method,
                    url.path,
                    params,
                    self.headers.get("Idempotency-Key"),
                    self.headers.get("Authorization"),
                )
                hold = fake._hold
                if hold is not None and (method, url.path) == ("POST", "/v1/checkout/sessions"):
                    # The session exists at Stripe; its answer waits (a test kills the caller).
                    fake.checkout_held.set()
                    hold.wait(timeout=30)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(7))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``FakeStripe.requests`` instead."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # how long stop() waits for the loop
            name="fake-stripe",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_checkouts()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    # -- controls -----------------------------------------------------------------------

    def hold_checkouts(self) -> None:
        """Create Checkout Sessions but keep their answers back until released."""
        self._hold = threading.Event()
        self.checkout_held.clear()

    def release_checkouts(self) -> None:
        if self._hold is not None:
            self._hold.set()
            self._hold = None

    def fail_next(self, n: int, *, status: int = 500) -> None:
        """Answer ``status`` (500, or 429 for a rate limit) to the next ``n`` API calls."""
        with self._lock:
            self._failures_left = n
            self._failure_status = status

    def pay(self, session_id: str, *, amount_total: int | None = None) -> dict[str, Any]:
        """The customer pays by card: the session completes paid, with a PI and a charge."""
        with self._lock:
            session = self._session(session_id)
            if amount_total is not None:
                session["amount_total"] = amount_total
            intent = self._intent_for(session)
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            self.charges[intent["latest_charge"]].update(status="succeeded", paid=True)
            session.update(status="complete", payment_status="paid")
            return dict(session)

    def start_async(self, session_id: str) -> dict[str, Any]:
        """A bank debit is submitted: complete but unpaid, the PI processing."""
        with self._lock:
            session = self._session(session_id)
            intent = self._intent_for(session)
            intent["status"] = "processing"
            session.update(status="complete", payment_status="unpaid")
            return dict(session)

    def fail_async(self, session_id: str) -> dict[str, Any]:
        """The bank debit bounces: the PI asks for another payment method."""
        with self._lock:
            session = self._session(session_id)
            intent = self._intent_for(session)
            intent["status"] = "requires_payment_method"
            self.charges[intent["latest_charge"]].update(status="failed", paid=False)
            session.update(status="complete", payment_status="unpaid")
            return dict(session)

    def expire(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._expire(session_id))

    def refund_charge(
        self, charge_id: str, amount: int, *, status: str = "succeeded"
    ) -> dict[str, Any]:
        """A refund made in the Stripe dashboard (full or partial)."""
        with self._lock:
            charge = self._get(self.charges, "charge", charge_id)
            return dict(self._refund(charge, amount, {}, status))

    def open_dispute(self, charge_id: str, *, amount: int | None = None) -> dict[str, Any]:
        """The cardholder disputes the charge with their bank."""
        with self._lock:
            charge = self._get(self.charges, "charge", charge_id)
            dispute = {
                "id": "dp_" + secrets.token_hex(12),
                "object": "dispute",
                "amount": charge["amount"] if amount is None else amount,
                "currency": charge["currency"],
                "charge": charge_id,
                "payment_intent": charge["payment_intent"],
                "status": "needs_response",
                "reason": "fraudulent",
                "is_charge_refundable": False,
                "livemode": False,
                "created": self._now(),
                "metadata": {},
            }
            charge["disputed"] = True
            self.disputes[dispute["id"]] = dispute
            return dict(dispute)

    def close_dispute(self, dispute_id: str, won: bool) -> dict[str, Any]:
        with self._lock:
            dispute = self._get(self.disputes, "dispute", dispute_id)
            dispute["status"] = "won" if won else "lost"
            return dict(dispute)

    def signed_event(
        self,
        event_type: str,
        obj: Mapping[str, Any],
        *,
        secret: str,
        timestamp: int | None = None,
        event_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A Stripe-shaped event and its ``Stripe-Signature`` header, signed with ``secret``.

        The timestamp is wall-clock time by default: the SDK checks its age with ``time``.
        """
        event = {
            "id": event_id or "evt_" + secrets.token_hex(12),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": dict(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(
            body, secret, timestamp=int(time.time()) if timestamp is None else timestamp
        )
        return body.encode(), {"stripe-signature": header, "content-type": "application/json"}

    # -- the API ------------------------------------------------------------------------

    def _handle(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        idempotency_key: str | None,
        authorization: str | None,
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(LoggedRequest(method, path, idempotency_key, params))
            if self._failures_left > 0:
                self._failures_left -= 1
                kind = "api_error" if self._failure_status >= 500 else "invalid_request_error"
                return self._failure_status, {"error": {"type": kind, "message": "Fake outage."}}
            if authorization != f"Bearer {self.secret_key}":
                return 401, {
                    "error": {"type": "invalid_request_error", "message": "Invalid API Key."}
                }
            if method == "POST" and idempotency_key:
                replay = self._idempotent.get(idempotency_key)
                if replay is not None:
                    if replay[:3] != (method, path, params):
                        return 400, {
                            "error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used "
                                "with the same parameters they were first used with.",
                            }
                        }
                    return replay[3], replay[4]
            try:
                status, answer = 200, self._route(method, path, params)
            except StripeFailure as failure:
                status, answer = failure.status, failure.body
            if method == "POST" and idempotency_key and status != 400:
                # Stripe saves a result once the endpoint ran; not a validation failure.
                self._idempotent[idempotency_key] = (method, path, params, status, answer)
            return status, answer

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        expand = set(params.get("expand") or [])
        match method, parts:
            case "POST", ["v1", "checkout", "sessions"]:
                return self._create_session(params)
            case "GET", ["v1", "checkout", "sessions"]:
                return self._list_sessions(params)
            case "GET", ["v1", "checkout", "sessions", session_id]:
                session = dict(self._session(session_id))
                if "payment_intent" in expand and session["payment_intent"]:
                    session["payment_intent"] = dict(
                        self.payment_intents[session["payment_intent"]]
                    )
                return session
            case "POST", ["v1", "checkout", "sessions", session_id, "expire"]:
                return dict(self._expire(session_id))
            case "POST", ["v1", "refunds"]:
                return dict(self._create_refund(params))
            case "GET", ["v1", "charges", charge_id]:
                charge = dict(self._get(self.charges, "charge", charge_id))
                if "refunds" in expand:  # Stripe embeds the first page of 10
                    charge["refunds"] = self._list_refunds({"charge": charge_id})
                return charge
            case "GET", ["v1", "refunds"]:
                return self._list_refunds(params)
            case "GET", ["v1", "disputes", dispute_id]:
                return dict(self._get(self.disputes, "dispute", dispute_id))
        raise StripeFailure(
            404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})."
        )

    def _create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") != "payment":
            raise StripeFailure(400, "invalid_request_error", "Only payment mode.", param="mode")
        (item,) = params["line_items"]
        price = item["price_data"]
        now = self._now()
        expires_at = int(params.get("expires_at") or now + 86400)
        if not now + 1800 <= expires_at <= now + 86400:
            raise StripeFailure(
                400,
                "invalid_request_error",
                "The `expires_at` timestamp must be at least 30 minutes and less than "
                "24 hours from Checkout Session creation.",
                param="expires_at",
            )
        session_id = "cs_test_" + secrets.token_hex(24)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "livemode": False,
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": int(price["unit_amount"]) * int(item["quantity"]),
            "amount_total": int(price["unit_amount"]) * int(item["quantity"]),
            "currency": price["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "created": now,
            "expires_at": expires_at,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "payment_intent": None,
            "customer": None,
        }
        self.sessions[session_id] = session
        self.checkout_params[session_id] = params
        return dict(session)

    def _list_sessions(self, params: dict[str, Any]) -> dict[str, Any]:
        """Newest first, as Stripe lists, by ``created[gte]``, ``limit`` and ``starting_after``."""
        since = int((params.get("created") or {}).get("gte") or 0)
        # Creation order stands in for Stripe's (created, id) order within one second.
        intent = params.get("payment_intent")
        newest_first = [
            s
            for s in reversed(self.sessions.values())
            if s["created"] >= since and intent in (None, s["payment_intent"])
        ]
        return self._page(newest_first, params, "/v1/checkout/sessions")

    def _list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        charge_id = params.get("charge")
        newest_first = [
            r for r in reversed(self.refunds.values()) if charge_id in (None, r["charge"])
        ]
        return self._page(newest_first, params, "/v1/refunds")

    @staticmethod
    def _page(
        newest_first: list[dict[str, Any]], params: dict[str, Any], url: str
    ) -> dict[str, Any]:
        after = params.get("starting_after")
        if after is not None:
            ids = [item["id"] for item in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :]
        limit = int(params.get("limit") or 10)
        return {
            "object": "list",
            "data": [dict(item) for item in newest_first[:limit]],
            "has_more": len(newest_first) > limit,
            "url": url,
        }

    def _expire(self, session_id: str) -> dict[str, Any]:
        session = self._session(session_id)
        if session["status"] != "open":
            raise StripeFailure(
                400,
                "invalid_request_error",
                'Only Checkout Sessions with a status in ["open"] can be expired.',
            )
        session["status"] = "expired"
        return session

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._get(self.payment_intents, "payment_intent", params["payment_intent"])
        charge = self.charges[intent["latest_charge"]]
        left = charge["amount"] - charge["amount_refunded"]
        if left <= 0:
            raise StripeFailure(
                400,
                "invalid_request_error",
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = int(params.get("amount") or left)
        return self._refund(charge, amount, params.get("metadata") or {}, "succeeded")

    def _refund(
        self, charge: dict[str, Any], amount: int, metadata: dict[str, Any], status: str
    ) -> dict[str, Any]:
        refund = {
            "id": "re_" + secrets.token_hex(12),
            "object": "refund",
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "status": status,
            "reason": None,
            "metadata": metadata,
            "created": self._now(),
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return refund

    # -- helpers ------------------------------------------------------------------------

    def _now(self) -> int:
        moment = self._clock.now() if self._clock is not None else datetime.now(UTC)
        return int(moment.timestamp())

    def _session(self, session_id: str) -> dict[str, Any]:
        return self._get(self.sessions, "checkout.session", session_id)

    @staticmethod
    def _get(table: dict[str, dict[str, Any]], kind: str, object_id: str) -> dict[str, Any]:
        found = table.get(object_id)
        if found is None:
            raise _not_found(kind, object_id)
        return found

    def _intent_for(self, session: dict[str, Any]) -> dict[str, Any]:
        """The session's PaymentIntent, made with its charge on the first attempt to pay."""
        if session["payment_intent"]:
            intent = self.payment_intents[session["payment_intent"]]
            intent["amount"] = session["amount_total"]
            self.charges[intent["latest_charge"]]["amount"] = session["amount_total"]
            return intent
        intent_id = "pi_" + secrets.token_hex(12)
        charge_id = "ch_" + secrets.token_hex(12)
        self.payment_intents[intent_id] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": 0,
            "currency": session["currency"],
            "status": "processing",
            "latest_charge": charge_id,
            "metadata": dict(
                (self.checkout_params[session["id"]].get("payment_intent_data") or {}).get(
                    "metadata"
                )
                or {}
            ),
            "livemode": False,
            "created": self._now(),
        }
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": session["amount_total"],
            "amount_refunded": 0,
            "currency": session["currency"],
            "payment_intent": intent_id,
            "status": "pending",
            "paid": False,
            "refunded": False,
            "disputed": False,
            "livemode": False,
            "metadata": {},
            "created": self._now(),
        }
        session["payment_intent"] = intent_id
        return self.payment_intents[intent_id]


def session_expiry(fake: FakeStripe, session_id: str) -> datetime:
    """The session's ``expires_at`` as an aware datetime, for assertions."""
    return datetime.fromtimestamp(fake.sessions[session_id]["expires_at"], UTC)
