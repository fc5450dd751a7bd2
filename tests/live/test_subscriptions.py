"""Subscriptions over graphql-transport-ws against uvicorn in this loop, on each backend."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from app.clock import FrozenClock
from app.main import create_app
from app.settings import Settings
from tests.api_client import Api
from tests.conftest import JWT_SECRET, T0
from tests.servers import serving, until, ws_session

# Also through PgBouncer: the request pool pooled per transaction, LISTEN on its own.
pytestmark = pytest.mark.pgbouncer

CREDITS_CHANGED = """
subscription { creditsChanged { id creditsTotal subscriptionBalance packBalance nextRenewalAt
  subscription { status } } }
"""
GENERATION_UPDATED = """
subscription Generations($id: ID) { generationUpdated(id: $id) { id tool cost status } }
"""
CANCEL = "mutation Cancel($id: ID!) { cancelSubscription(accountId: $id) { id } }"


@pytest.fixture
async def address(app: Any) -> AsyncIterator[str]:
    async with serving(app) as address:
        yield address


async def test_subscriber_sees_its_account_then_each_committed_change(
    api: Api, address: str
) -> None:
    # given
    account_id = await api.subscribed_account()
    async with ws_session(address, api.token(account_id)) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        first = (await stream.next())["creditsChanged"]
        assert (first["id"], first["creditsTotal"]) == (account_id, 1000)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://{address}/metrics")).text
        assert 'creditgate_websocket_subscriptions{field="creditsChanged"} 1.0' in metrics

        # when
        run = await api.run(account_id)

        # then
        assert run["__typename"] == "GeneratorRun"
        assert (await stream.next())["creditsChanged"]["creditsTotal"] == 980
        await api.buy(account_id)
        pushed = (await stream.next())["creditsChanged"]
        assert (pushed["subscriptionBalance"], pushed["packBalance"]) == (980, 500)


async def test_cancelling_the_plan_is_pushed(api: Api, address: str) -> None:
    account_id = await api.subscribed_account()
    async with ws_session(address, api.token(account_id)) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        assert (await stream.next())["creditsChanged"]["subscription"]["status"] == "ACTIVE"
        await api.as_service(CANCEL, {"id": account_id})
        pushed = (await stream.next())["creditsChanged"]
        assert pushed["subscription"]["status"] == "CANCELED"


async def test_a_failed_write_pushes_nothing(api: Api, address: str) -> None:
    # given: an account with no credits and a subscriber
    account_id = await api.create_account()
    async with ws_session(address, api.token(account_id)) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        assert (await stream.next())["creditsChanged"]["creditsTotal"] == 0

        # when: a run is refused (rolled back), then a plan starts (committed)
        refused = await api.run(account_id)
        await api.subscribe(account_id)

        # then: the first message after the refusal is the committed change
        assert refused["__typename"] == "InsufficientCredits"
        assert (await stream.next())["creditsChanged"]["creditsTotal"] == 1000


async def test_renewal_with_no_request_is_pushed_when_it_takes_effect(
    api: Api, app: Any, address: str, clock: FrozenClock
) -> None:
    # given: 20 credits spent this cycle
    account_id = await api.subscribed_account()
    await api.run(account_id)
    token = api.token(account_id, ttl=timedelta(days=60))
    async with ws_session(address, token) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        now = (await stream.next())["creditsChanged"]
        assert now["creditsTotal"] == 980

        # when: time reaches the renewal, and nobody writes anything
        clock.advance(timedelta(days=31))
        app.state.live.alarm.poke()

        # then
        renewed = (await stream.next())["creditsChanged"]
        assert renewed["creditsTotal"] == 1000
        assert renewed["nextRenewalAt"] > now["nextRenewalAt"]


async def test_the_alarm_wakes_nobody_before_the_renewal(
    api: Api, app: Any, address: str, clock: FrozenClock
) -> None:
    account_id = await api.subscribed_account()
    token = api.token(account_id, ttl=timedelta(days=60))
    async with ws_session(address, token) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        await stream.next()
        clock.advance(timedelta(days=30))
        assert app.state.live.alarm.check() == 0
        clock.advance(timedelta(days=1))
        assert app.state.live.alarm.check() == 1
        assert (await stream.next())["creditsChanged"]["creditsTotal"] == 1000


async def test_generation_updates_for_the_callers_runs(api: Api, app: Any, address: str) -> None:
    account_id = await api.subscribed_account()
    async with ws_session(address, api.token(account_id)) as session:
        every = session.subscribe(GENERATION_UPDATED)
        first = asyncio.create_task(every.next())
        await until(lambda: app.state.live.hub.count("generationUpdated") == 1)

        run = await api.run(account_id, tool="PRO")

        created = (await first)["generationUpdated"]
        assert created == {
            "id": run["generation"]["id"],
            "tool": "PRO",
            "cost": run["generation"]["cost"],
            "status": "QUEUED",
        }
        one = session.subscribe(GENERATION_UPDATED, {"id": created["id"]})
        assert (await one.next())["generationUpdated"] == created


async def test_another_accounts_generation_reads_as_not_found(api: Api, address: str) -> None:
    owner = await api.subscribed_account()
    run = await api.run(owner)
    other = await api.subscribed_account()
    async with ws_session(address, api.token(other)) as session:
        stream = session.subscribe(GENERATION_UPDATED, {"id": run["generation"]["id"]})
        with pytest.raises(Exception, match="does not exist"):
            await stream.next()


async def test_a_subscription_passes_the_same_document_and_input_checks(
    api: Api, address: str
) -> None:
    # Queries and mutations run the policy in GatewaySchema.execute; subscriptions in
    # Strawberry's runner, through extensions built from the same policy objects.
    account_id = await api.subscribed_account()
    aliases = " ".join(f"a{n}: id" for n in range(16))
    async with ws_session(address, api.token(account_id)) as session:
        too_many = session.subscribe(f"subscription {{ creditsChanged {{ {aliases} }} }}")
        with pytest.raises(Exception, match=r"16 aliases found\. Allowed: 15"):
            await too_many.next()
        nul = session.subscribe(GENERATION_UPDATED, {"id": "a\x00b"})
        with pytest.raises(Exception, match="may not contain the NUL character"):
            await nul.next()


@pytest.mark.parametrize("key", ["authorization", "AUTHORIZATION"])
async def test_the_token_key_is_accepted_in_any_case(api: Api, address: str, key: str) -> None:
    account_id = await api.subscribed_account()
    async with ws_session(address, api.token(account_id), key=key) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        assert (await stream.next())["creditsChanged"]["id"] == account_id


@pytest.mark.parametrize("payload", [{}, {"Authorization": "Bearer not-a-token"}])
async def test_a_connection_without_a_valid_token_is_refused(
    address: str, payload: dict[str, str]
) -> None:
    async with connect(f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_the_legacy_graphql_ws_protocol_is_not_served(address: str) -> None:
    async with connect(f"ws://{address}/graphql", subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4406


async def test_a_subscription_ends_when_its_token_expires(
    api: Api, address: str, clock: FrozenClock
) -> None:
    account_id = await api.subscribed_account()
    async with ws_session(address, api.token(account_id, ttl=timedelta(hours=1))) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        await stream.next()
        clock.advance(timedelta(hours=2))
        await api.as_service(CANCEL, {"id": account_id})  # a committed change wakes the feed
        with pytest.raises(StopAsyncIteration):
            await stream.next()


class RunningClock:
    """A clock that runs in real time from wherever it was last set."""

    def __init__(self, start: datetime) -> None:
        self.set(start)

    def set(self, moment: datetime) -> None:
        self._start, self._at = moment, time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._at)


async def test_the_renewal_is_pushed_in_real_time_without_a_nudge(settings: Settings) -> None:
    # given: a running clock half a second before the account's renewal
    clock = RunningClock(T0)
    app = create_app(settings, clock)
    try:
        async with serving(app) as address:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                api = Api(client, JWT_SECRET, FrozenClock(T0))
                account_id = await api.subscribed_account()
                await api.run(account_id)
                renewal = datetime.fromisoformat((await api.balances(account_id))["nextRenewalAt"])
                token = api.token(account_id, ttl=timedelta(days=60))
            clock.set(renewal - timedelta(seconds=0.5))
            async with ws_session(address, token) as session:
                stream = session.subscribe(CREDITS_CHANGED)
                assert (await stream.next())["creditsChanged"]["creditsTotal"] == 980

                # when: time passes; nobody writes and nobody pokes the alarm
                renewed = (await stream.next(seconds=3))["creditsChanged"]

                # then: pushed once the renewal took effect, not before
                assert clock.now() >= renewal
                assert renewed["creditsTotal"] == 1000
    finally:
        await app.state.services.db.dispose()
