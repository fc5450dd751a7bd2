"""A real HTTP receiver of the gateway's webhooks, as a platform service would write one.

``http.server`` in a daemon thread on a free 127.0.0.1 port. Every request is verified with
the ``standardwebhooks`` package against the secrets it was given and recorded; the
"application" behind it handles each ``webhook-id`` once (deduplication), as the README
tells receivers to. ``answers`` decides each response: a status code, or ``HANG`` (hold the
request until :meth:`Receiver.release`, as a receiver that stopped answering would).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

HANG = -1


@dataclass(frozen=True, slots=True)
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: str
    verified: bool
    status: int
    at: float  # time.monotonic() when it arrived


class Receiver:
    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.requests: list[Received] = []
        # The application: each event handled once, in arrival order.
        self.handled: dict[str, dict[str, Any]] = {}
        self.answers: Callable[[str], int] = lambda _id: 200
        self.hanging = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        self._release.set()

    def verify(self, body: str, headers: dict[str, str], secret: str) -> Any:
        return Webhook(secret).verify(body, headers)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.handled.values())

    def _receive(self, headers: dict[str, str], body: str) -> int:
        webhook_id = headers.get("webhook-id", "")
        verified = False
        for secret in self.secrets:
            try:
                self.verify(body, headers, secret)
                verified = True
                break
            except WebhookVerificationError:
                continue
        status = self.answers(webhook_id) if verified else 400
        with self._lock:
            self.requests.append(
                Received(webhook_id, headers, body, verified, status, time.monotonic())
            )
            if verified and 200 <= status < 300 and webhook_id not in self.handled:
                self.handled[webhook_id] = json.loads(body)
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._receive(headers, body)
                if status == HANG:
                    with receiver._lock:
                        receiver.hanging += 1
                    receiver._release.wait(60)
                    status = 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler
