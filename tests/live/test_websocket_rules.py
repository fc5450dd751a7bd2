"""The websocket under the same rules as HTTP, and one account's share of a process bounded.

Spoken by hand (``Raw``) where the protocol's own messages matter: ``error`` messages with
their codes, and close codes. Each test runs on each backend.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

import graphql_schema.subscriptions as subscriptions
from app.cli import main
from app.clock import FrozenClock
from app.main import create_app
from app.services import accounts
from app.settings import Settings
from graphql_schema.engine.trusted_documents import document_hash
from tests.api_client import RUN_GENERATOR, Api
from tests.conftest import JWT_SECRET, T0
from tests.live.test_subscriptions import RunningClock
from tests.servers import NEXT_TIMEOUT, serving, until

CREDITS = "subscription Credits { creditsChanged { id creditsTotal } }"
ME = "query Me { me { id creditsTotal } }"
ACCOUNT = "query Account($id: ID!) { account(id: $id) { creditsTotal } }"
RUN = {"tool": "TURBO", "key": "ws-run", "prompt": None}


@dataclass
class Live:
    app: Any
    address: str
    api: Api

    @property
    def hub(self) -> Any:
        return self.app.state.live.hub

    async def credits(self, account_id: str) -> int:
        data = await self.api.as_service(ACCOUNT, {"id": account_id})
        return int(data["account"]["creditsTotal"])


Serve = Callable[..., Awaitable[Live]]


@pytest.fixture
async def serve(settings: Settings, clock: FrozenClock) -> AsyncIterator[Serve]:
    """Serve an app with some settings changed; everything is stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(*, app_clock: Any = clock, **changes: Any) -> Live:
            changed = Settings(_env_file=None, **{**settings.model_dump(), **changes})
            app = create_app(changed, app_clock)
            stack.push_async_callback(app.state.services.db.dispose)
            address = await stack.enter_async_context(serving(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            await stack.enter_async_context(client)
            return Live(app, address, Api(client, JWT_SECRET, clock))

        yield start


class Raw:
    """A graphql-transport-ws connection spoken by hand."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), NEXT_TIMEOUT))
        return message

    async def init(self, token: str) -> dict[str, Any]:
        await self.send(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        )
        return await self.receive()

    async def subscribe(self, operation_id: str, **payload: Any) -> None:
        await self.send({"id": operation_id, "type": "subscribe", "payload": payload})

    async def answer(self, operation_id: str) -> dict[str, Any]:
        """The next message for ``operation_id`` (others are skipped)."""
        while True:
            message = await self.receive()
            if message.get("id") == operation_id:
                return message

    async def close_code(self) -> int:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(self.ws.recv(), NEXT_TIMEOUT)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code


@asynccontextmanager
async def raw(address: str, token: str | None = None) -> AsyncIterator[Raw]:
    url = f"ws://{address}/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"], max_size=None) as ws:  # type: ignore[list-item]
        connection = Raw(ws)
        if token is not None:
            assert (await connection.init(token))["type"] == "connection_ack"
        yield connection


def error_code(message: dict[str, Any]) -> str:
    assert message["type"] == "error", message
    return str(message["payload"][0]["extensions"]["code"])


# --- trusted documents and the operation policy (issue 12, item 4) ---------------------


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "operations"
    folder.mkdir()
    (folder / "me.graphql").write_text(ME)
    (folder / "credits.graphql").write_text(CREDITS)
    output = tmp_path / "manifest.json"
    assert main(["trusted-documents", str(folder), "-o", str(output)]) == 0
    return output


async def test_trusted_only_refuses_a_free_mutation_over_the_websocket_and_charges_nothing(
    serve: Serve, manifest: Path
) -> None:
    # given
    live = await serve(trusted_documents_file=manifest, trusted_documents_only=True)
    account_id = await live.api.subscribed_account()
    async with raw(live.address, live.api.token(account_id)) as ws:
        # when
        await ws.subscribe("1", query=RUN_GENERATOR, variables=RUN)

        # then
        assert error_code(await ws.answer("1")) == "PERSISTED_QUERY_NOT_IN_LIST"
    assert await live.credits(account_id) == 1000


async def test_trusted_only_refuses_a_free_subscription_and_serves_a_trusted_one_by_hash(
    serve: Serve, manifest: Path
) -> None:
    live = await serve(trusted_documents_file=manifest, trusted_documents_only=True)
    account_id = await live.api.subscribed_account()
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.subscribe("free", query="subscription { creditsChanged { id } }")
        assert error_code(await ws.answer("free")) == "PERSISTED_QUERY_NOT_IN_LIST"

        persisted = {"persistedQuery": {"version": 1, "sha256Hash": document_hash(CREDITS)}}
        await ws.subscribe("hash", extensions=persisted)
        pushed = await ws.answer("hash")
        assert pushed["type"] == "next", pushed
        assert pushed["payload"]["data"]["creditsChanged"]["creditsTotal"] == 1000

        await ws.subscribe("id", documentId=f"sha256:{document_hash(ME)}")
        answered = await ws.answer("id")
        assert answered["payload"]["data"]["me"]["id"] == account_id

        await ws.subscribe("unknown", documentId="0" * 64)
        assert error_code(await ws.answer("unknown")) == "PERSISTED_QUERY_NOT_FOUND"


async def test_mutations_over_the_websocket_spend_the_same_rate_limit_as_over_http(
    serve: Serve,
) -> None:
    # given: a budget of 2 mutations a minute, spent over HTTP
    live = await serve(
        rate_limits_enabled=True,
        redis_url=None,
        rate_limit_per_account="2/minute",
        rate_limit_per_ip="1000/minute",
    )
    account_id = await live.api.subscribed_account()
    for n in range(2):
        await live.api.run(account_id, key=f"http-{n}")
    assert await live.credits(account_id) == 960

    # when: a third over the websocket
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.subscribe("1", query=RUN_GENERATOR, variables=RUN)

        # then: refused like over HTTP, and nothing is charged
        assert error_code(await ws.answer("1")) == "RATE_LIMITED"
    assert await live.credits(account_id) == 960


async def test_queries_over_the_websocket_are_bounded_like_over_http(serve: Serve) -> None:
    live = await serve()
    account_id = await live.api.subscribed_account()
    aliases = " ".join(f"a{n}: id" for n in range(16))
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.subscribe("1", query=f"{{ me {{ {aliases} }} }}")
        refused = await ws.answer("1")
        assert refused["type"] == "error"
        assert "16 aliases found. Allowed: 15" in refused["payload"][0]["message"]

        await ws.subscribe("2", query=ME)
        served = await ws.answer("2")
        assert served["payload"]["data"]["me"] == {"id": account_id, "creditsTotal": 1000}
        assert (await ws.answer("2"))["type"] == "complete"


# --- one account's share of a process (item 5) ------------------------------------------


async def test_subscriptions_per_account_are_capped_across_its_connections(serve: Serve) -> None:
    # given: 3 subscriptions per account, two held on one connection and one on another
    live = await serve(max_subscriptions_per_account=3)
    account_id = await live.api.subscribed_account()
    other_id = await live.api.subscribed_account()
    token = live.api.token(account_id)
    async with raw(live.address, token) as first, raw(live.address, token) as second:
        for operation_id in ("a", "b"):
            await first.subscribe(operation_id, query=CREDITS)
            assert (await first.answer(operation_id))["type"] == "next"
        await second.subscribe("c", query=CREDITS)
        assert (await second.answer("c"))["type"] == "next"

        # when: a fourth
        await second.subscribe("d", query=CREDITS)

        # then: refused with a typed error; another account is not affected
        refused = await second.answer("d")
        assert error_code(refused) == "TOO_MANY_SUBSCRIPTIONS"
        assert refused["payload"][0]["extensions"]["limit"] == 3
        async with raw(live.address, live.api.token(other_id)) as other:
            await other.subscribe("x", query=CREDITS)
            assert (await other.answer("x"))["type"] == "next"

        # and a completed subscription frees its place
        await first.send({"id": "a", "type": "complete"})
        await until(lambda: live.hub.subscriptions_of(account_id) == 2)
        await second.subscribe("e", query=CREDITS)
        assert (await second.answer("e"))["type"] == "next"


async def test_queries_over_the_websocket_do_not_count_as_subscriptions(serve: Serve) -> None:
    live = await serve(max_subscriptions_per_account=1)
    account_id = await live.api.subscribed_account()
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.subscribe("live", query=CREDITS)
        assert (await ws.answer("live"))["type"] == "next"
        await ws.subscribe("q", query=ME)
        assert (await ws.answer("q"))["type"] == "next"


async def test_a_connection_over_the_accounts_cap_is_closed_with_4429(serve: Serve) -> None:
    # given: two connections per account, both held
    live = await serve(max_connections_per_account=2)
    account_id = await live.api.subscribed_account()
    other_id = await live.api.subscribed_account()
    token = live.api.token(account_id)
    async with raw(live.address, token), raw(live.address, token):
        # when: a third connection_init
        async with raw(live.address) as third:
            await third.send(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
            )
            # then
            assert await third.close_code() == 4429
        async with raw(live.address, live.api.token(other_id)):
            assert live.hub.connections_of(other_id) == 1
        assert live.hub.connections_of(account_id) == 2

    # and a closed connection frees its place
    await until(lambda: live.hub.connections_of(account_id) == 0)
    async with raw(live.address, token):
        assert live.hub.connections_of(account_id) == 1


async def test_one_committed_change_makes_one_read_for_all_feeds_of_the_account(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: 20 creditsChanged feeds of one account on two connections, reads counted
    live = await serve()
    account_id = await live.api.subscribed_account()
    reads: list[str] = []

    async def get_account(wanted: str, services: Any) -> Any:
        reads.append(wanted)
        return await accounts.get_account(wanted, services)

    monkeypatch.setattr(subscriptions, "accounts", SimpleNamespace(get_account=get_account))
    token = live.api.token(account_id)
    async with raw(live.address, token) as first, raw(live.address, token) as second:
        ids = {ws: [f"{n}" for n in range(10)] for ws in (first, second)}
        for ws, operation_ids in ids.items():
            for operation_id in operation_ids:
                await ws.subscribe(operation_id, query=CREDITS)
            assert set(await pushes(ws, len(operation_ids))) == {1000}
        assert len(reads) == 20  # each subscription starts with a read of its own

        # when: one committed change
        await live.api.run(account_id)

        # then: every feed is pushed the change, from one read
        for ws, operation_ids in ids.items():
            assert set(await pushes(ws, len(operation_ids))) == {980}
        assert len(reads) == 21


async def pushes(ws: Raw, count: int) -> list[int]:
    """The creditsTotal pushed to each of ``count`` subscriptions, one message each."""
    pushed: dict[str, int] = {}
    while len(pushed) < count:
        message = await ws.receive()
        assert message["type"] == "next" and message["id"] not in pushed, message
        pushed[message["id"]] = message["payload"]["data"]["creditsChanged"]["creditsTotal"]
    return list(pushed.values())


# --- a subscription ends when its token does (item 11) -----------------------------------


async def test_the_connection_closes_with_4403_when_the_token_expires_with_no_event(
    serve: Serve, clock: FrozenClock
) -> None:
    # given: an account with no plan (nothing renews) and a token for one hour
    live = await serve()
    account_id = await live.api.create_account()
    async with raw(live.address, live.api.token(account_id, ttl=timedelta(hours=1))) as ws:
        await ws.subscribe("1", query=CREDITS)
        assert (await ws.answer("1"))["type"] == "next"
        # the alarm sleeps until the token runs out
        assert live.hub.earliest_deadline() == T0 + timedelta(hours=1)
        clock.advance(timedelta(minutes=59))
        live.app.state.live.alarm.check()

        # when: the token's moment comes, and nothing is written
        clock.advance(timedelta(minutes=1))
        live.app.state.live.alarm.check()

        # then
        assert await ws.close_code() == 4403
    await until(lambda: live.hub.connections_of(account_id) == 0)


async def test_the_token_expiry_closes_the_connection_in_real_time_without_a_nudge(
    serve: Serve,
) -> None:
    # given: the server's clock runs in real time; a token with a second to live
    running = RunningClock(T0)
    live = await serve(app_clock=running)
    account_id = await live.api.create_account()
    token = live.api.token(account_id, ttl=timedelta(seconds=1))
    async with raw(live.address, token) as ws:
        await ws.subscribe("1", query=CREDITS)
        assert (await ws.answer("1"))["type"] == "next"

        # when: time passes; nobody writes and nobody pokes the alarm
        code = await ws.close_code()

        # then
        assert code == 4403
        assert running.now() >= T0 + timedelta(seconds=1)


# --- frames bounded before they are parsed (item 9) ---------------------------------------


async def test_a_frame_over_the_body_limit_closes_with_4413_without_being_parsed(
    serve: Serve,
) -> None:
    live = await serve(max_body_bytes=2048)
    account_id = await live.api.create_account()
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.subscribe("1", query=ME)
        assert (await ws.answer("1"))["type"] == "next"
        assert (await ws.answer("1"))["type"] == "complete"
        # not even JSON: parsed, it would close with 4400
        await ws.ws.send("{" + "x" * 2048)
        assert await ws.close_code() == 4413


async def test_a_large_connection_init_closes_with_4413_before_any_token_is_read(
    serve: Serve,
) -> None:
    # given: the default body limit (128 KiB), and 10 KB before any connection_init
    live = await serve()
    async with raw(live.address) as ws:
        # when: not JSON (parsed, it would close with 4400)
        await ws.ws.send("{" + "x" * 10_000)

        # then
        assert await ws.close_code() == 4413


def test_uvicorn_bounds_websocket_frames_by_the_body_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: serve with its app, migrations and logging set aside; uvicorn.run recorded
    import uvicorn

    import app.main
    import app.observability.logging
    import app.persistence.migrate

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda _app, **options: served.update(options))
    monkeypatch.setattr(app.main, "create_served_app", lambda settings: object())
    monkeypatch.setattr(app.persistence.migrate, "upgrade", lambda *_args: None)
    monkeypatch.setattr(app.observability.logging, "configure_logging", lambda _s: None)
    monkeypatch.setenv("CREDITGATE_MAX_BODY_BYTES", "4096")

    # when
    assert main(["serve"]) == 0

    # then
    assert served["ws_max_size"] == 4096


# --- client mistakes answered as client errors (item 7) -----------------------------------


@pytest.mark.parametrize(
    "document", ["subscription { ...Nope }", "{ ...Nope }", "mutation { ...Nope }"]
)
async def test_an_undefined_fragment_is_a_validation_error_and_the_connection_lives(
    serve: Serve, document: str
) -> None:
    live = await serve()
    account_id = await live.api.subscribed_account()
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.subscribe("1", query=document)
        refused = await ws.answer("1")
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["message"] == "Unknown fragment 'Nope'."

        await ws.subscribe("2", query=CREDITS)
        assert (await ws.answer("2"))["payload"]["data"]["creditsChanged"]["id"] == account_id


@pytest.mark.parametrize("depth", [100, 5000])
async def test_deeply_nested_variables_are_bad_user_input_and_the_connection_lives(
    serve: Serve, depth: int
) -> None:
    live = await serve()
    account_id = await live.api.subscribed_account()
    nested = "[" * depth + "]" * depth
    subscribe = (
        '{"id": "1", "type": "subscribe", "payload": {"query": "query Q($id: ID!) '
        '{ account(id: $id) { id } }", "variables": {"id": ' + nested + "}}}"
    )
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.ws.send(subscribe)
        assert error_code(await ws.answer("1")) == "BAD_USER_INPUT"

        await ws.subscribe("2", query=CREDITS)
        assert (await ws.answer("2"))["payload"]["data"]["creditsChanged"]["id"] == account_id


async def test_mutations_over_the_websocket_spend_the_callers_ip_budget_too(
    serve: Serve,
) -> None:
    # given: an IP budget of 2 mutations a minute, spent over HTTP by another account
    live = await serve(
        rate_limits_enabled=True,
        redis_url=None,
        rate_limit_per_account="1000/minute",
        rate_limit_per_ip="2/minute",
    )
    spender, account_id = await live.api.subscribed_account(), await live.api.subscribed_account()
    for n in range(2):
        await live.api.run(spender, key=f"http-{n}")

    # when: a mutation from the same address over the websocket
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.subscribe("1", query=RUN_GENERATOR, variables=RUN)

        # then
        refused = await ws.answer("1")
        assert error_code(refused) == "RATE_LIMITED"
        assert refused["payload"][0]["extensions"]["scope"] == "ip"
    assert await live.credits(account_id) == 1000


async def test_a_lone_surrogate_in_variables_is_bad_user_input_and_the_connection_lives(
    serve: Serve,
) -> None:
    live = await serve()
    account_id = await live.api.subscribed_account()
    async with raw(live.address, live.api.token(account_id)) as ws:
        # json.dumps writes the lone surrogate as the escape \ud800, as a hostile client would
        variables = {**RUN, "prompt": "a\ud800"}
        await ws.subscribe("1", query=RUN_GENERATOR, variables=variables)
        assert error_code(await ws.answer("1")) == "BAD_USER_INPUT"

        await ws.subscribe("2", query=CREDITS)
        assert (await ws.answer("2"))["payload"]["data"]["creditsChanged"]["creditsTotal"] == 1000
    assert await live.credits(account_id) == 1000


@pytest.mark.parametrize("payload", ["a string", None, ["a", "list"]])
async def test_a_subscribe_without_an_object_payload_closes_with_4400(
    serve: Serve, payload: object
) -> None:
    live = await serve()
    account_id = await live.api.create_account()
    async with raw(live.address, live.api.token(account_id)) as ws:
        await ws.send({"id": "1", "type": "subscribe", "payload": payload})
        assert await ws.close_code() == 4400
