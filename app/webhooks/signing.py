"""Standard Webhooks signatures (https://www.standardwebhooks.com), by its own package."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A signing secret as the specification writes it: ``whsec_`` + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(
    message_id: str, timestamp: datetime, body: str, secrets_in_force: Sequence[str]
) -> dict[str, str]:
    """The three headers; one ``v1,`` signature per secret (two during a rotation)."""
    signatures = [Webhook(s).sign(message_id, timestamp, body) for s in secrets_in_force]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": "creditgate-webhooks",
    }
