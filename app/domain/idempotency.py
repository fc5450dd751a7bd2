"""Idempotency keys: a retry replays the first result; other arguments are a conflict."""

from __future__ import annotations

import hashlib
import json

from app.domain.errors import IdempotencyConflict, InvalidInput

MAX_KEY_LENGTH = 255


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            "idempotencyKey",
            f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} printable characters.",
        )
    return key


def fingerprint(operation: str, **arguments: object) -> str:
    """A stable digest of what a request asked for, to tell a retry from a reuse."""
    canonical = json.dumps({"op": operation, **arguments}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_retry(key: str, stored_fingerprint: str, request_fingerprint: str) -> None:
    """A retry must ask for what the first request asked; anything else under the key is refused."""
    if stored_fingerprint != request_fingerprint:
        raise IdempotencyConflict(key)
