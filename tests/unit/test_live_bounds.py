"""One account's share of the hub, and the websocket's message bounds, with no I/O."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.auth import issue_token, token_expires_at
from app.domain.events import AccountChanged
from app.events.hub import Hub, OverCapacity
from graphql_schema.engine.websocket import TooDeep, decode_message, deeper_than

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "test-secret-0123456789abcdef0123456789"


class Reads:
    """A read that waits until released, counting how often it ran."""

    def __init__(self) -> None:
        self.count = 0
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.count += 1
        await self.release.wait()
        return self.count


async def test_feeds_of_one_account_share_one_read_per_event() -> None:
    hub, reads = Hub(), Reads()
    with hub.open("a", "creditsChanged"), hub.open("a", "creditsChanged"):
        # given: three feeds asking after the same event
        waiting = [asyncio.create_task(hub.shared_read("a", "account", reads)) for _ in range(3)]
        await asyncio.sleep(0)
        reads.release.set()
        assert await asyncio.gather(*waiting) == [1, 1, 1]

        # when: the next event
        hub.deliver(AccountChanged("a"))

        # then: one more read, and another key is a read of its own
        assert await hub.shared_read("a", "account", reads) == 2
        assert await hub.shared_read("a", "account", reads) == 2
        assert await hub.shared_read("a", ("generation", "g1"), reads) == 3


async def test_a_subscriber_leaving_does_not_cancel_the_read_others_wait_for() -> None:
    hub, reads = Hub(), Reads()
    with hub.open("a", "creditsChanged"):
        leaving = asyncio.create_task(hub.shared_read("a", "account", reads))
        staying = asyncio.create_task(hub.shared_read("a", "account", reads))
        await asyncio.sleep(0)
        leaving.cancel()
        reads.release.set()
        assert await staying == 1
        assert reads.count == 1


def test_connections_and_subscriptions_are_capped_per_account() -> None:
    hub = Hub(max_connections_per_account=1, max_subscriptions_per_account=2)
    session = hub.connect("a", T0)
    with pytest.raises(OverCapacity):
        hub.connect("a", T0)
    hub.connect("b", T0)
    hub.connect(None, T0)  # a service token holds no account's place
    hub.connect(None, T0)
    session.close()
    hub.connect("a", T0)

    first, second = hub.hold_subscription("a"), hub.hold_subscription("a")
    with pytest.raises(OverCapacity):
        hub.hold_subscription("a")
    first()
    first()  # released once, however often called
    assert hub.subscriptions_of("a") == 1
    hub.hold_subscription("a")
    second()
    assert hub.subscriptions_of("a") == 1


def test_a_session_expires_when_the_alarm_reaches_its_token_expiry() -> None:
    hub = Hub()
    session = hub.connect("a", T0 + timedelta(hours=1))
    assert hub.earliest_deadline() == T0 + timedelta(hours=1)

    hub.wake_due(T0 + timedelta(minutes=59))
    assert not session.expired.is_set()
    hub.wake_due(T0 + timedelta(hours=1))

    assert session.expired.is_set()
    assert hub.earliest_deadline() is None  # an expired session no longer wakes the alarm


def test_a_message_too_deep_to_decode_is_outlined_with_its_id_and_strings_kept() -> None:
    tricky = json.dumps({"quote": 'a "[" in a string \\ ]', "n": [1, {"b": 2}]})
    text = (
        '{"id": "op-1", "type": "subscribe", "payload": {"s": ' + tricky + ', "variables": '
        '{"x": ' + "[" * 5000 + '"]"' + "]" * 5000 + "}}}"
    )
    with pytest.raises(TooDeep) as deep:
        decode_message(text)
    outline = deep.value.outline
    assert isinstance(outline, dict)
    assert (outline["id"], outline["type"]) == ("op-1", "subscribe")
    assert outline["payload"]["s"] == json.loads(tricky)


def test_variables_depth_is_measured_without_recursion() -> None:
    nested: object = "leaf"
    for _ in range(100_000):
        nested = [nested]
    assert deeper_than(nested, 32)
    assert not deeper_than({"a": [{"b": [1, 2]}]}, 32)
    assert deeper_than({"a": [[[1]]]}, 3)
    assert not deeper_than({"a": [[1]]}, 3)


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), 1e300])
def test_a_token_expiry_that_names_no_moment_is_none_so_the_connection_ends_at_once(
    exp: float,
) -> None:
    token = jwt.encode({"sub": "a", "role": "user", "exp": exp}, SECRET, algorithm="HS256")
    assert token_expires_at(token, SECRET) is None


def test_a_token_expiry_is_the_moment_of_its_exp() -> None:
    token = issue_token(SECRET, role="user", account_id="a", now=T0, ttl=timedelta(hours=1))
    assert token_expires_at(token, SECRET) == T0 + timedelta(hours=1)
