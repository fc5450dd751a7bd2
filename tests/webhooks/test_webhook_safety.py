"""Endpoint URLs in production: https to public addresses only, at creation and at send."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.api_client import Api
from tests.conftest import ApiFactory
from tests.db import Rows
from tests.webhooks.conftest import CREATE_ENDPOINT, create_endpoint, deliver, deliveries
from tests.webhooks.receiver import Receiver

REFUSED_URLS = [
    "http://hooks.example.com/x",  # not https
    "https://127.0.0.1/x",
    "https://[::1]/x",
    "https://localhost/x",
    "https://10.1.2.3/x",
    "https://192.168.0.10/x",
    "https://172.16.5.4/x",
    "https://169.254.169.254/latest/meta-data",  # cloud metadata: link-local
    "https://[fe80::1]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://0.0.0.0/x",
    "https://user:pass@hooks.example.com/x",
    "ftp://hooks.example.com/x",
]


def _local_name() -> str | None:
    """This machine's name, if it resolves to an address that is not public (it usually
    does: /etc/hosts maps it to 127.0.1.1 or a private address)."""
    import ipaddress

    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 443)}
    except OSError:
        return None
    if addresses and not any(ipaddress.ip_address(a).is_global for a in addresses):
        return name
    return None


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_production_refuses_endpoints_that_are_not_public_https(
    make_api: ApiFactory, url: str, rows: Rows
) -> None:
    api = await make_api(env="production")
    body = await api.post(
        CREATE_ENDPOINT, {"url": url, "types": [], "description": None}, token=api.token()
    )
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "url"}, error
    assert await rows.all("SELECT id FROM webhook_endpoints") == []


async def test_production_refuses_a_name_that_resolves_to_a_private_address(
    make_api: ApiFactory,
) -> None:
    name = _local_name()
    if name is None:
        pytest.skip("this machine's name resolves to no private address")
    api = await make_api(env="production")
    body = await api.post(
        CREATE_ENDPOINT,
        {"url": f"https://{name}/hooks", "types": [], "description": None},
        token=api.token(),
    )
    assert "not a public address" in body["errors"][0]["message"]


async def test_an_endpoint_pointing_inside_is_refused_again_at_send_time(
    api: Api, make_api: ApiFactory, receiver: Receiver, rows: Rows
) -> None:
    # given an endpoint stored when the rule was off (or whose name moved inside since)
    endpoint_id = await create_endpoint(api, receiver)
    await api.subscribed_account()
    # when a gateway that allows public addresses only delivers
    guarded = await make_api(webhook_public_only=True)
    app: Any = guarded.client._transport.app  # type: ignore[attr-defined]
    await deliver(app)
    # then nothing reached the receiver, and the attempt says why
    assert receiver.requests == []
    (delivery,) = await deliveries(api, endpoint_id)
    assert delivery["status"] == "PENDING" and delivery["attempts"] == 1
    assert delivery["lastError"].startswith("refused: url must use https")
