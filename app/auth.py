"""Bearer tokens: HS256 JWTs naming an account (``user``) or a trusted backend (``service``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal, TypeGuard

import jwt

Role = Literal["user", "service"]
ALGORITHM = "HS256"
# Verified tokens remembered per process: a client sends the same token on every request.
VERIFIED_TOKENS_CACHED = 2048
LATEST_EXPIRY = datetime(9999, 1, 1, tzinfo=UTC).timestamp()


class InvalidToken(Exception):
    """The token is missing, malformed, forged or expired; the reason is safe to show."""


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    account_id: str | None = None
    # A service token's ``sub``: which backend or support seat acts (adjustments record it).
    subject: str | None = None

    @property
    def is_service(self) -> bool:
        return self.role == "service"

    def may_act_for(self, account_id: str) -> bool:
        """A user token acts on its own account only; a service token on any."""
        return self.is_service or self.account_id == account_id


MAX_SUBJECT_LENGTH = 255


def issue_token(
    secret: str,
    *,
    role: Role,
    account_id: str | None,
    now: datetime,
    ttl: timedelta,
    subject: str | None = None,
) -> str:
    """``subject``: a service token's ``sub`` (default ``service``), e.g. ``support:ada``."""
    if role == "user" and not account_id:
        raise ValueError("a user token names its account")
    claims: dict[str, object] = {"role": role, "iat": now, "exp": now + ttl}
    claims["sub"] = account_id if role == "user" else (subject or "service")
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str, now: datetime) -> Principal:
    """Verify signature and claims; expiry is judged by the injected clock's ``now``."""
    try:
        expires, principal = _verified_principal(token, secret)
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("The token is invalid.") from exc
    if expires <= now.timestamp():
        raise InvalidToken("The token has expired.")
    if principal is None:
        raise InvalidToken("The token is invalid.")
    return principal


@lru_cache(maxsize=VERIFIED_TOKENS_CACHED)
def _verified_principal(token: str, secret: str) -> tuple[int | float, Principal | None]:
    """A verified token's expiry and whom it names (None: its role or subject is not one a
    token may carry). Remembered per token, as a client sends the same one on every request:
    the expiry is judged against the clock by ``decode_token`` on every use, cached or not.
    Failures raise, and are not remembered."""
    claims = _verified_claims(token, secret)
    expires = claims.get("exp")
    if not _sane_expiry(expires):
        raise InvalidToken("The token is invalid.")
    role, subject = claims.get("role"), claims.get("sub")
    if role == "service":
        return expires, Principal("service", subject=subject) if _plain_subject(subject) else None
    if role == "user" and isinstance(subject, str) and subject:
        return expires, Principal("user", subject)
    return expires, None


def _plain_subject(subject: object) -> TypeGuard[str]:
    """A service token's subject is recorded in the ledger: short printable text."""
    return (
        isinstance(subject, str)
        and 0 < len(subject) <= MAX_SUBJECT_LENGTH
        and subject.isprintable()
    )


def _sane_expiry(expires: object) -> TypeGuard[int | float]:
    """``exp`` is a finite number of seconds after 1970 and before year 9999: NaN compares
    false with everything and 1e400 parses as infinity, so either would never expire."""
    return (
        isinstance(expires, int | float)
        and not isinstance(expires, bool)
        and math.isfinite(expires)
        and 0 < expires < LATEST_EXPIRY
    )


@lru_cache(maxsize=VERIFIED_TOKENS_CACHED)
def _verified_claims(token: str, secret: str) -> Mapping[str, Any]:
    """The claims of a token whose signature checks out; failures raise and are not cached.

    Only the signature and the claims' shape are remembered: expiry depends on the clock, so
    ``decode_token`` judges it on every use, cached or not.
    """
    claims = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        # PyJWT would judge exp and iat by the wall clock; every time check here uses ``now``.
        options={"require": ["exp", "sub", "role"], "verify_exp": False, "verify_iat": False},
    )
    return MappingProxyType(claims)


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Use 'Authorization: Bearer <token>'.")
    return token.strip()


def token_expires_at(token: str, secret: str) -> datetime | None:
    """When a token ``decode_token`` accepted runs out: a live connection closes then.

    None if its ``exp`` names no representable moment (the caller treats that as now).
    """
    try:
        expires = float(_verified_claims(token, secret)["exp"])
        return datetime.fromtimestamp(expires, UTC)
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError, OverflowError, OSError):
        return None
