from datetime import UTC, datetime, timedelta

import pytest

from app.auth import (
    VERIFIED_TOKENS_CACHED,
    InvalidToken,
    _verified_claims,
    _verified_principal,
    decode_token,
    issue_token,
)

SECRET = "unit-secret-0123456789abcdef0123456789"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _user_token(secret: str = SECRET, ttl: timedelta = timedelta(hours=1)) -> str:
    return issue_token(secret, role="user", account_id="acc-1", now=NOW, ttl=ttl)


def test_a_remembered_token_is_still_refused_once_it_expires() -> None:
    # given a token verified (and so remembered) while it was valid
    token = _user_token()
    assert decode_token(token, SECRET, NOW).account_id == "acc-1"
    assert decode_token(token, SECRET, NOW + timedelta(minutes=59)).account_id == "acc-1"

    # when it is used again after its expiry
    # then the clock, not the cache, decides
    with pytest.raises(InvalidToken, match="expired"):
        decode_token(token, SECRET, NOW + timedelta(hours=1))


def test_a_remembered_token_is_refused_under_another_secret() -> None:
    token = _user_token()
    decode_token(token, SECRET, NOW)

    with pytest.raises(InvalidToken, match="invalid"):
        decode_token(token, "another-secret-0123456789abcdef012345", NOW)


def test_a_forged_token_is_refused_every_time_and_never_remembered() -> None:
    forged = _user_token(secret="forger-secret-0123456789abcdef0123456")
    remembered_before = _verified_claims.cache_info().currsize
    principals_before = _verified_principal.cache_info().currsize

    for _ in range(2):
        with pytest.raises(InvalidToken, match="invalid"):
            decode_token(forged, SECRET, NOW)

    assert _verified_claims.cache_info().currsize == remembered_before
    assert _verified_principal.cache_info().currsize == principals_before


def test_the_token_caches_are_bounded() -> None:
    assert _verified_claims.cache_info().maxsize == VERIFIED_TOKENS_CACHED
    assert _verified_principal.cache_info().maxsize == VERIFIED_TOKENS_CACHED


def test_a_remembered_token_names_the_same_caller_each_time_without_verifying_again() -> None:
    # given a token decoded once
    token = _user_token(ttl=timedelta(hours=2))
    first = decode_token(token, SECRET, NOW)
    hits = _verified_principal.cache_info().hits

    # when it is decoded again
    again = decode_token(token, SECRET, NOW + timedelta(minutes=1))

    # then the remembered caller answers, and the clock still decides its expiry
    assert again is first and _verified_principal.cache_info().hits == hits + 1
    with pytest.raises(InvalidToken, match="expired"):
        decode_token(token, SECRET, NOW + timedelta(hours=2))


def test_an_expired_token_with_a_bad_role_reads_as_expired_as_before() -> None:
    import jwt

    token = jwt.encode(
        {"role": "admin", "sub": "x", "exp": NOW - timedelta(seconds=1)}, SECRET, "HS256"
    )
    with pytest.raises(InvalidToken, match="expired"):
        decode_token(token, SECRET, NOW)
    with pytest.raises(InvalidToken, match="invalid"):
        decode_token(token, SECRET, NOW - timedelta(hours=1))
