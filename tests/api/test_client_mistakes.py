"""Client mistakes get typed client errors: never INTERNAL_SERVER_ERROR, never a bare 500,
never an ERROR traceback in the log (issue 12, item 7)."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest
from websockets.typing import Subprotocol

from tests.api_client import CREATE_ACCOUNT, Api

LEDGER = "query($after: String) { me { ledger(after: $after) { edges { cursor } } } }"
GENERATIONS = "query($after: String) { me { generations(after: $after) { edges { cursor } } } }"


def cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_spread_of_an_undefined_fragment_is_a_validation_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        body = await api.post("{ ...Nope }")

    assert body["data"] is None
    assert [e["message"] for e in body["errors"]] == ["Unknown fragment 'Nope'."]
    assert_no_error_logged(caplog)


async def test_an_undefined_fragment_inside_a_field_is_a_validation_error(api: Api) -> None:
    body = await api.post("{ plans { ...Nope } }")

    assert [e["message"] for e in body["errors"]] == ["Unknown fragment 'Nope'."]


async def test_the_depth_limit_still_applies_through_fragments(make_api: Any) -> None:
    api: Api = await make_api(max_depth=1)
    account_id = await api.create_account()

    body = await api.post(
        "{ ...Deep } fragment Deep on Query { me { subscription { plan } } }",
        token=api.token(account_id),
    )

    assert "exceeds maximum operation depth of 1" in body["errors"][0]["message"]


@pytest.mark.parametrize("depth", [40, 600, 5000])
async def test_deeply_nested_json_variables_are_a_400_not_a_500(
    api: Api, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    content = '{"query": "{ plans { plan } }", "variables": {"v": ' + nested + "}}"

    with caplog.at_level(logging.ERROR):
        response = await api.client.post(
            "/graphql", content=content.encode(), headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert "nest" in response.text
    assert_no_error_logged(caplog)


async def test_json_nested_as_deep_as_inputs_go_is_served(api: Api) -> None:
    body = await api.post("{ plans { plan } }", {"unused": [[[[{"a": [1]}]]]]})

    assert body["data"]["plans"]


@pytest.mark.parametrize(
    ("query", "raw"),
    [
        (LEDGER, "ledger:²"),
        (LEDGER, "ledger:٣"),
        (LEDGER, "ledger:" + "9" * 5000),
        (LEDGER, f"ledger:{2**63}"),
        (LEDGER, "ledger:1\x00"),
        (GENERATIONS, "generation:9999-12-31T23:59:59+00:00|x"),
        (GENERATIONS, "generation:9999-12-31T23:59:59-14:00|x"),
        (GENERATIONS, "generation:0001-01-01T00:00:00+14:00|x"),
        (GENERATIONS, "generation:0001-01-01T00:00:00+01:00|x"),
        (GENERATIONS, "generation:2026-01-01T00:00:00+00:00|a\x00b"),
        (GENERATIONS, "generation:2026-01-01T00:00:00+00:00|" + "x" * 5000),
    ],
)
async def test_a_forged_cursor_is_bad_user_input(
    api: Api, caplog: pytest.LogCaptureFixture, query: str, raw: str
) -> None:
    account_id = await api.create_account()

    with caplog.at_level(logging.ERROR):
        body = await api.post(query, {"after": cursor(raw)}, token=api.token(account_id))

    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert_no_error_logged(caplog)


async def test_cursors_the_server_gave_still_page(api: Api) -> None:
    account_id = await api.subscribed_account()
    await api.run(account_id, key="run-1")
    await api.run(account_id, key="run-2")
    token = api.token(account_id)

    first = await api.data(
        "{ me { generations(first: 1) { edges { cursor } } "
        "ledger(first: 1) { edges { cursor } } } }",
        token=token,
    )
    generations = await api.data(
        GENERATIONS, {"after": first["me"]["generations"]["edges"][0]["cursor"]}, token=token
    )
    ledger = await api.data(
        LEDGER, {"after": first["me"]["ledger"]["edges"][0]["cursor"]}, token=token
    )

    assert len(generations["me"]["generations"]["edges"]) == 1
    assert ledger["me"]["ledger"]["edges"]


async def test_an_email_taken_twice_is_a_conflict(api: Api) -> None:
    await api.as_service(CREATE_ACCOUNT, {"email": "twice@example.com"})

    body = await api.post(CREATE_ACCOUNT, {"email": "twice@example.com"}, token=api.token())

    assert [e["extensions"]["code"] for e in body["errors"]] == ["CONFLICT"]


@pytest.mark.postgres_only
async def test_concurrent_creations_with_one_email_make_one_account_and_conflicts(
    make_api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given a real pool on PostgreSQL, wide enough for every request to run at once
    api: Api = await make_api(db_pool_size=20)
    token = api.token()

    # when 20 requests create the same email at once
    with caplog.at_level(logging.ERROR):
        bodies = await asyncio.gather(
            *(
                api.post(CREATE_ACCOUNT, {"email": "race@example.com"}, token=token)
                for _ in range(20)
            )
        )

    # then one account is made and every other request is told CONFLICT
    made = [b for b in bodies if b.get("data") and b["data"].get("createAccount")]
    codes = [e["extensions"]["code"] for b in bodies for e in b.get("errors", [])]
    assert len(made) == 1
    assert codes == ["CONFLICT"] * 19
    assert_no_error_logged(caplog)


async def test_a_deeply_nested_websocket_message_closes_with_4400_not_an_error(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The JSON decoder is shared with HTTP: too deep is malformed JSON on both transports.
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from tests.servers import serving

    # Under the 8 KiB a message may have before connection_init is acknowledged (4413).
    nested = "[" * 3000 + "]" * 3000
    async with serving(app) as address:
        with caplog.at_level(logging.ERROR):
            async with connect(
                f"ws://{address}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
            ) as ws:
                await ws.send('{"type": "connection_init", "payload": ' + nested + "}")
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(30):
                        await ws.recv()

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    assert_no_error_logged(caplog)
