"""A test App Store: a certificate chain made here, and JWS signed the way Apple signs them.

Apple signs transactions and notifications with ES256 and puts its chain in the ``x5c``
header: a leaf carrying the marker extension 1.2.840.113635.100.6.11.1, an intermediate
carrying 1.2.840.113635.100.6.2.1, and Apple's root. ``SignedDataVerifier`` checks the chain
against the roots it is given (with OpenSSL's strict flags), both markers, the signature,
then the bundle id and environment. This module makes a root, an intermediate and a leaf of
its own with the same extensions, so the real verifier is exercised end to end offline, as
the library's own tests do with their fixed test chain.

    AppleChain.generate()      a fresh root -> intermediate -> leaf (EC P-256)
    AppleChain.sign(payload)   the compact JWS, ``x5c`` = [leaf, intermediate, root]
    transaction(...)           a JWSTransaction payload for a consumable
    notification(...)          a ResponseBodyV2 payload around a signed transaction

With ``ocsp_url`` the leaf and intermediate name an OCSP responder (Authority Information
Access), for the verifier's online revocation checks; ``OcspResponder`` answers for them.
"""

from __future__ import annotations

import base64
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

LEAF_MARKER = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_MARKER = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
BUNDLE_ID = "com.creditgate.app"
APP_APPLE_ID = 1234567890


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "creditgate tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    marker: x509.ObjectIdentifier | None,
    ocsp_url: str | None,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    signer_public = issuer.public_key() if issuer else public
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public),  # type: ignore[arg-type]
        critical=False,
    )
    if marker is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(marker, b"\x05\x00"), critical=False
        )
    if ocsp_url is not None:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
                    )
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class AppleChain:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    # Serial numbers the OCSP responder reports as revoked.
    revoked: set[int]

    @classmethod
    def generate(
        cls,
        *,
        leaf_marker: bool = True,
        intermediate_marker: bool = True,
        ocsp_url: str | None = None,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(days=3650),
        under: AppleChain | None = None,
    ) -> AppleChain:
        """A new chain; ``under``: a new intermediate and leaf below that chain's root."""
        start = not_before or datetime.now(UTC) - timedelta(days=365 * 5)
        end = start + lifetime
        if under is not None:
            root_key, root = under.root_key, under.root
        else:
            root_key = ec.generate_private_key(ec.SECP256R1())
            root = _certificate(
                "Test Apple Root CA - G3",
                root_key,
                None,
                root_key,
                ca=True,
                marker=None,
                ocsp_url=None,
                not_before=start,
                not_after=end,
            )
        intermediate_key = ec.generate_private_key(ec.SECP256R1())
        intermediate = _certificate(
            "Test Apple Worldwide Developer Relations CA",
            intermediate_key,
            root,
            root_key,
            ca=True,
            marker=INTERMEDIATE_MARKER if intermediate_marker else None,
            ocsp_url=ocsp_url,
            not_before=start,
            not_after=end,
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = _certificate(
            "Test Prod ECC Mac App Store and iTunes Store Receipt Signing",
            leaf_key,
            intermediate,
            intermediate_key,
            ca=False,
            marker=LEAF_MARKER if leaf_marker else None,
            ocsp_url=ocsp_url,
            not_before=start,
            not_after=end,
        )
        return cls(root_key, root, intermediate_key, intermediate, leaf_key, leaf, set())

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.DER)

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def x5c(self) -> list[str]:
        return [
            base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
            for cert in (self.leaf, self.intermediate, self.root)
        ]

    def sign(
        self, payload: dict[str, Any], *, key: ec.EllipticCurvePrivateKey | None = None
    ) -> str:
        """The compact JWS Apple would send; ``key`` signs with another key (a forgery)."""
        return jwt.encode(
            payload,
            key or self.leaf_key,
            algorithm="ES256",
            headers={"x5c": self.x5c()},
        )

    def ocsp_response(self, request_der: bytes) -> bytes:
        """A signed OCSP answer for a certificate of this chain: good unless revoked."""
        request = ocsp.load_der_ocsp_request(request_der)
        if request.serial_number == self.leaf.serial_number:
            cert, issuer, key = self.leaf, self.intermediate, self.intermediate_key
        else:
            cert, issuer, key = self.intermediate, self.root, self.root_key
        now = datetime.now(UTC)
        status = (
            ocsp.OCSPCertStatus.REVOKED
            if cert.serial_number in self.revoked
            else ocsp.OCSPCertStatus.GOOD
        )
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert,
            issuer=issuer,
            algorithm=hashes.SHA256(),
            cert_status=status,
            this_update=now - timedelta(minutes=1),
            next_update=now + timedelta(hours=1),
            revocation_time=now - timedelta(hours=1)
            if status is ocsp.OCSPCertStatus.REVOKED
            else None,
            revocation_reason=None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def millis(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


def transaction(
    *,
    account_id: str | None,
    product_id: str = "com.creditgate.pack500",
    transaction_id: str | None = None,
    quantity: int = 1,
    purchased_at: datetime,
    signed_at: datetime | None = None,
    environment: str = "Sandbox",
    bundle_id: str = BUNDLE_ID,
    revoked_at: datetime | None = None,
    revocation_percentage: int | None = None,
) -> dict[str, Any]:
    """A JWSTransactionDecodedPayload of a consumable, as Apple signs it."""
    transaction_id = transaction_id or str(2000000000000000 + uuid.uuid4().int % 10**12)
    payload: dict[str, Any] = {
        "transactionId": transaction_id,
        "originalTransactionId": transaction_id,
        "bundleId": bundle_id,
        "productId": product_id,
        "purchaseDate": millis(purchased_at),
        "originalPurchaseDate": millis(purchased_at),
        "quantity": quantity,
        "type": "Consumable",
        "inAppOwnershipType": "PURCHASED",
        "signedDate": millis(signed_at or purchased_at),
        "environment": environment,
        "transactionReason": "PURCHASE",
        "storefront": "USA",
        "storefrontId": "143441",
        "price": 9990 * quantity,
        "currency": "USD",
    }
    if account_id is not None:
        payload["appAccountToken"] = account_id
    if revoked_at is not None:
        payload["revocationDate"] = millis(revoked_at)
        payload["revocationReason"] = 0
        if revocation_percentage is not None:
            payload["revocationType"] = "REFUND_PRORATED"
            payload["revocationPercentage"] = revocation_percentage
        else:
            payload["revocationType"] = "REFUND_FULL"
    return payload


def notification(
    notification_type: str,
    signed_transaction: str,
    *,
    signed_at: datetime,
    notification_uuid: str | None = None,
    environment: str = "Sandbox",
    bundle_id: str = BUNDLE_ID,
    subtype: str | None = None,
) -> dict[str, Any]:
    """A ResponseBodyV2DecodedPayload as Apple signs it."""
    payload: dict[str, Any] = {
        "notificationType": notification_type,
        "notificationUUID": notification_uuid or str(uuid.uuid4()),
        "version": "2.0",
        "signedDate": millis(signed_at),
        "data": {
            "appAppleId": APP_APPLE_ID,
            "bundleId": bundle_id,
            "bundleVersion": "1",
            "environment": environment,
            "signedTransactionInfo": signed_transaction,
        },
    }
    if subtype is not None:
        payload["subtype"] = subtype
    return payload


class OcspResponder:
    """A loopback OCSP responder answering for one test chain (``http.server`` in a thread)."""

    def __init__(self) -> None:
        self.chain: AppleChain | None = None
        self.requests = 0
        self.down = False
        handler = self._handler()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/ocsp"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                responder.requests += 1
                if responder.down or responder.chain is None:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = responder.chain.ocsp_response(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler

    def start(self) -> OcspResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
