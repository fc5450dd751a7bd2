"""A loopback stand-in for the few Google endpoints creditgate calls, for the real clients.

``google-api-python-client`` (with its bundled discovery document) and ``google-auth`` talk
to this real HTTP server (``http.server`` in a daemon thread on a free 127.0.0.1 port) as
they would to Google:

    POST /token                                   OAuth 2.0 JWT-bearer grant: the service
                                                  account's assertion verified (RS256, its
                                                  public key, Google's audience, the scope)
    GET  /androidpublisher/v3/applications/{package}/purchases/products/{product}/tokens/{token}
    POST .../tokens/{token}:consume
    GET  /androidpublisher/v3/applications/{package}/purchases/voidedpurchases
    GET  /oauth2/v1/certs                         the certificates Pub/Sub tokens are signed
                                                  with ({kid: PEM}, as Google serves them)

Every Play call must carry an access token this server issued. Tests drive what the buyer
and Google do (``buy``, ``void``), make Google fail (``fail_next``, ``fail_next_consume``),
read ``requests``, generate the service account's key file (``key_file``) and sign Pub/Sub
pushes (``push``, ``oidc_token``), with keys made here.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

PACKAGE = "com.creditgate.app"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
SERVICE_ACCOUNT = "play-api@creditgate-test.iam.gserviceaccount.com"
PUSHER = "rtdn-push@creditgate-test.iam.gserviceaccount.com"
AUDIENCE = "https://gateway.creditgate.test/payments/google/rtdn"
PLAY = "/androidpublisher/v3/applications/"


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _self_signed(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-google-signer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class FakeGooglePlay:
    """Google's state for one test: purchases by token, voided purchases, tokens issued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.service_account_key = _rsa_key()
        self.signing_key = _rsa_key()  # Google's key for OIDC tokens
        self.signing_kid = secrets.token_hex(8)
        self.purchases: dict[str, dict[str, Any]] = {}
        self.voided: list[dict[str, Any]] = []
        self.requests: list[LoggedRequest] = []
        self.access_tokens: set[str] = set()
        self._failures: list[int] = []
        self._consume_failures: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- server -------------------------------------------------------------------------

    @property
    def base(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def certs_url(self) -> str:
        return f"{self.base}/oauth2/v1/certs"

    def start(self) -> FakeGooglePlay:
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
                status, answer = fake._handle(
                    method, url.path, parse_qs(url.query), body, self.headers.get("Authorization")
                )
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``FakeGooglePlay.requests`` instead."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-google-play",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    # -- what tests do ------------------------------------------------------------------

    def key_file(self, directory: Path) -> Path:
        """The service account's JSON key, as the Play Console's Google Cloud project issues."""
        path = directory / "play-service-account.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "creditgate-test",
                    "private_key_id": secrets.token_hex(20),
                    "private_key": _pem(self.service_account_key),
                    "client_email": SERVICE_ACCOUNT,
                    "client_id": "100000000000000000001",
                    "token_uri": f"{self.base}/token",
                }
            )
        )
        return path

    def buy(
        self,
        account_id: str | None,
        product_id: str = "pack_500",
        *,
        quantity: int = 1,
        state: int = 0,
        test_purchase: bool = False,
        package: str = PACKAGE,
    ) -> str:
        """A purchase made in the app with ``obfuscatedAccountId``; returns its token."""
        token = secrets.token_urlsafe(90)  # real tokens are long opaque strings
        purchase: dict[str, Any] = {
            "kind": "androidpublisher#productPurchase",
            "package": package,
            "productId": product_id,
            "purchaseTimeMillis": str(int(time.time() * 1000)),
            "purchaseState": state,
            "consumptionState": 0,
            "acknowledgementState": 0,
            "orderId": f"GPA.{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}",
            "quantity": quantity,
            "regionCode": "US",
        }
        if account_id is not None:
            purchase["obfuscatedExternalAccountId"] = account_id
        if test_purchase:
            purchase["purchaseType"] = 0
        with self._lock:
            self.purchases[token] = purchase
        return token

    def void(self, token: str, *, quantity: int | None = None, at: datetime | None = None) -> None:
        """Google refunds (or the bank charges back) the purchase; listed as voided."""
        purchase = self.purchases[token]
        entry = {
            "kind": "androidpublisher#voidedPurchase",
            "purchaseToken": token,
            "orderId": purchase["orderId"],
            "purchaseTimeMillis": purchase["purchaseTimeMillis"],
            "voidedTimeMillis": str(int((at or datetime.now(UTC)).timestamp() * 1000)),
            "voidedSource": 0,
            "voidedReason": 0,
        }
        if quantity is not None:
            entry["voidedQuantity"] = quantity
        with self._lock:
            self.voided.append(entry)
            if quantity is None:
                purchase["purchaseState"] = 1

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self._failures.extend(statuses)

    def fail_next_consume(self, *statuses: int) -> None:
        """Answer the next consumes with these statuses (the purchase read still works)."""
        with self._lock:
            self._consume_failures.extend(statuses)

    def consumed(self, token: str) -> bool:
        return bool(self.purchases[token]["consumptionState"] == 1)

    def calls(self, suffix: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    def oidc_token(
        self,
        *,
        audience: str = AUDIENCE,
        email: str = PUSHER,
        issuer: str = "https://accounts.google.com",
        key: rsa.RSAPrivateKey | None = None,
        expires_in: int = 3600,
    ) -> str:
        """The token Pub/Sub puts in a push's Authorization header."""
        now = int(time.time())
        claims = {
            "aud": audience,
            "azp": "100000000000000000002",
            "email": email,
            "email_verified": True,
            "exp": now + expires_in,
            "iat": now - 5 if expires_in > 0 else now - 7200,
            "iss": issuer,
            "sub": "100000000000000000002",
        }
        return jwt.encode(
            claims,
            key or self.signing_key,
            algorithm="RS256",
            headers={"kid": self.signing_kid},
        )

    def push(self, notification: dict[str, Any], *, message_id: str | None = None) -> bytes:
        """A Pub/Sub push body carrying a developer notification for the package."""
        data = {"version": "1.0", "packageName": PACKAGE, **notification}
        data.setdefault("eventTimeMillis", str(int(time.time() * 1000)))
        return json.dumps(
            {
                "message": {
                    "data": base64.b64encode(json.dumps(data).encode()).decode(),
                    "messageId": message_id or str(secrets.randbelow(10**16)),
                    "publishTime": datetime.now(UTC).isoformat(),
                    "attributes": {},
                },
                "subscription": "projects/creditgate-test/subscriptions/play-rtdn",
            }
        ).encode()

    # -- the endpoints ------------------------------------------------------------------

    def _handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: str,
        authorization: str | None,
    ) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(LoggedRequest(method, path, query))
            if path == "/oauth2/v1/certs":
                return 200, {self.signing_kid: _self_signed(self.signing_key)}
            if path == "/token" and method == "POST":
                return self._token(parse_qs(body))
            if self._failures:
                status = self._failures.pop(0)
                return status, _error(status, "BACKEND_ERROR", "Injected failure.")
            if not path.startswith(PLAY):
                return 404, _error(404, "NOT_FOUND", f"No such path {path}.")
            bearer = (authorization or "").removeprefix("Bearer ")
            if bearer not in self.access_tokens:
                return 401, _error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
            package, _, rest = path[len(PLAY) :].partition("/")
            if package != PACKAGE:
                return 404, _error(404, "NOT_FOUND", "Package not found.")
            if rest == "purchases/voidedpurchases" and method == "GET":
                return self._voided(query)
            parts = rest.split("/")
            if len(parts) == 5 and parts[:2] == ["purchases", "products"] and parts[3] == "tokens":
                product_id, token = unquote(parts[2]), unquote(parts[4])
                consume = method == "POST" and token.endswith(":consume")
                token = token.removesuffix(":consume")
                purchase = self.purchases.get(token)
                if purchase is None or purchase["package"] != package:
                    return 404, _error(404, "NOT_FOUND", "The purchase token was not found.")
                if purchase["productId"] != product_id:
                    return 400, _error(
                        400,
                        "INVALID_ARGUMENT",
                        "The document type is not supported / product does not match.",
                    )
                if consume:
                    if self._consume_failures:
                        status = self._consume_failures.pop(0)
                        return status, _error(status, "INTERNAL", "Injected consume failure.")
                    if purchase["purchaseState"] != 0:
                        return 400, _error(400, "FAILED_PRECONDITION", "Not purchased.")
                    purchase["consumptionState"] = 1
                    purchase["acknowledgementState"] = 1
                    return 204, None
                if method == "GET":
                    answer = {k: v for k, v in purchase.items() if k != "package"}
                    return 200, answer
            return 404, _error(404, "NOT_FOUND", f"No such method {method} {path}.")

    def _token(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        grant = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                assertion,
                self.service_account_key.public_key(),
                algorithms=["RS256"],
                # google-auth names Google's token endpoint as the audience, wherever the key
                # file's token_uri sends the grant.
                audience="https://oauth2.googleapis.com/token",
            )
        except jwt.PyJWTError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        if claims.get("iss") != SERVICE_ACCOUNT or SCOPE not in str(claims.get("scope")):
            return 400, {"error": "invalid_scope"}
        token = "ya29." + secrets.token_urlsafe(24)
        self.access_tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _voided(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        start = int(query.get("startTime", ["0"])[0])
        page_size = int(query.get("maxResults", ["1000"])[0])
        offset = int(query.get("token", ["0"])[0] or 0)
        partial = query.get("includeQuantityBasedPartialRefund", ["false"])[0] == "true"
        found = [
            v
            for v in self.voided
            if int(v["voidedTimeMillis"]) >= start and (partial or "voidedQuantity" not in v)
        ]
        page = found[offset : offset + page_size]
        answer: dict[str, Any] = {"voidedPurchases": page}
        if offset + page_size < len(found):
            answer["tokenPagination"] = {"nextPageToken": str(offset + page_size)}
        return 200, answer


def _error(status: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": reason}}
