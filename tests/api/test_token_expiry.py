"""``exp`` must be a finite time before year 9999: NaN and 1e400 (infinity) never expired
(issue 12, item 10). Tokens are signed with the test secret, their claims raw JSON."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from tests.api_client import Api
from tests.conftest import JWT_SECRET


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(claims_json: str) -> str:
    """An HS256 token over ``claims_json`` as written (json.dumps cannot write 1e400)."""
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(claims_json.encode())
    signature = hmac.new(JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize(
    "exp", ["NaN", "Infinity", "1e400", "-1e400", "0", "-5", "253402300800", "true", '"9999999999"']
)
async def test_a_token_whose_exp_is_not_a_sane_finite_time_is_unauthenticated(
    api: Api, exp: str
) -> None:
    token = signed('{"sub":"service","role":"service","exp":' + exp + "}")

    body = await api.post(
        "query($ids: [ID!]!) { accounts(ids: $ids) { id } }", {"ids": []}, token=token
    )

    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


async def test_a_token_with_a_sane_exp_signed_the_same_way_is_accepted(api: Api) -> None:
    exp = int(api.clock.now().timestamp()) + 3600
    token = signed('{"sub":"service","role":"service","exp":' + str(exp) + ".5}")

    data = await api.data(
        "query($ids: [ID!]!) { accounts(ids: $ids) { id } }", {"ids": []}, token=token
    )

    assert data["accounts"] == []
