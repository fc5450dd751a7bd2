"""Outgoing webhooks through the GraphQL endpoint to a real receiver, on both databases.

The receiver (tests/webhooks/receiver.py) verifies every request with ``standardwebhooks``
and hands each ``webhook-id`` to its application once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dateutil.relativedelta import relativedelta
from standardwebhooks import Webhook

from app.clock import FrozenClock
from app.domain.webhooks import EventType
from tests.api.test_adjustments import adjust
from tests.api.test_pack_payments import settle
from tests.api_client import Api, Worker
from tests.conftest import ApiFactory
from tests.db import Rows
from tests.webhooks.conftest import create_endpoint, deliver, deliveries
from tests.webhooks.receiver import HANG, Receiver

ROTATE = """
mutation Rotate($id: ID!) {
  rotateWebhookSecret(id: $id) { secret endpoint { id previousSecretExpiresAt } }
}
"""
REDELIVER = "mutation R($id: ID!) { redeliverWebhook(deliveryId: $id) { id eventId status } }"
UPDATE = """
mutation U($id: ID!, $enabled: Boolean, $types: [WebhookEventType!]) {
  updateWebhookEndpoint(input: {id: $id, enabled: $enabled, eventTypes: $types}) {
    id enabled eventTypes disabledAt
  }
}
"""
DELETE = "mutation D($id: ID!) { deleteWebhookEndpoint(id: $id) }"
ENDPOINTS = "query { webhookEndpoints { id url enabled eventTypes } }"


async def spend_to(api: Api, account_id: str, total: int, tool: str, cost: int, tag: str) -> int:
    """Run ``tool`` while the total stays at or above ``total``; the total after."""
    left = int((await api.balances(account_id))["creditsTotal"])
    n = 0
    while left - cost >= total:
        run = await api.run(account_id, tool, key=f"{tag}-{n}")
        assert run["__typename"] == "GeneratorRun", run
        left = run["account"]["creditsTotal"]
        n += 1
    return left


async def test_every_event_type_reaches_a_verifying_receiver_in_order(
    api: Api, app: Any, clock: FrozenClock, receiver: Receiver, rows: Rows
) -> None:
    # given an endpoint for every event type and a STARTER account (1000 credits, low
    # below 100) whose cycle ends two minutes from now
    endpoint_id = await create_endpoint(api, receiver)
    account_id = await api.create_account()
    started = clock.now() - relativedelta(months=1) + timedelta(minutes=2)
    await api.subscribe(account_id, started_at=started)
    # when packs are bought, one refunded, one disputed and lost
    assert (await api.buy(account_id, key="a"))["__typename"] == "PackPurchased"
    refunded = (await api.buy(account_id, key="b"))["purchase"]["id"]
    assert (await settle(api, refunded, "REFUNDED"))["__typename"] == "PurchaseClosed"
    disputed = (await api.buy(account_id, key="c"))["purchase"]["id"]
    await settle(api, disputed, "DISPUTED")
    await settle(api, disputed, "DISPUTE_LOST")
    # ... a run succeeds and one fails
    worker = Worker(api)
    await api.run(account_id, "ULTRA", key="ok")
    await api.run(account_id, "ULTRA", key="bad")
    ok, bad = await worker.claim(2)
    await worker.complete(ok["id"])
    await worker.fail(bad["id"], "GPU out of memory")
    # ... the cycle renews (the pack left expires), and the credits are spent to nothing
    clock.advance(timedelta(minutes=3))
    await spend_to(api, account_id, 100, "ULTRA", 80, "down")
    await api.run(account_id, "ULTRA", key="cross")
    await spend_to(api, account_id, 0, "TURBO", 20, "turbo")
    left = await spend_to(api, account_id, 0, "BACKGROUND_REMOVAL", 1, "last")
    assert left == 0
    await deliver(app)
    # then every event type arrived, each verified, each once, in commit order
    events = receiver.events()
    assert {e["type"] for e in events} == {t.value for t in EventType}
    assert all(r.verified for r in receiver.requests)
    assert len(receiver.requests) == len(events)
    outbox = await rows.all(
        "SELECT e.id FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "
        "WHERE d.endpoint_id = :ep ORDER BY d.id",
        ep=endpoint_id,
    )
    assert [r.webhook_id for r in receiver.requests] == [r["id"] for r in outbox]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        assert event["data"]["accountId"] == account_id
        by_type.setdefault(event["type"], []).append(event["data"])
    # ... each naming the ledger entries involved, as the ledger has them
    ledger = {
        str(r["id"]): r
        for r in await rows.all(
            "SELECT id, kind, amount, balance_after FROM ledger_entries WHERE account_id = :a",
            a=account_id,
        )
    }
    for event in events:
        for entry in event["data"]["ledgerEntries"]:
            stored = ledger[entry["id"]]
            assert (stored["kind"], stored["amount"]) == (entry["kind"], entry["amount"])
            assert stored["balance_after"] == entry["balanceAfter"]
    (low,) = by_type["credits.low"]
    assert (
        low["threshold"] == 100 and low["balances"]["total"] < 100 <= low["balances"]["total"] + 80
    )
    assert low["reason"] == "spend"
    (depleted,) = by_type["credits.depleted"]
    assert depleted["balances"]["total"] == 0 and depleted["threshold"] == 1
    assert [d["reason"] for d in by_type["credits.renewed"]] == ["plan", "renewal"]
    assert len(by_type["pack.purchased"]) == 3
    (expired,) = by_type["pack.expired"]
    assert expired["creditsLost"] > 0 and expired["ledgerEntries"][0]["kind"] == "EXPIRY"
    (refund,) = by_type["purchase.refunded"]
    assert (refund["purchaseId"], refund["creditsRevoked"]) == (refunded, 500)
    assert [d["reason"] for d in by_type["purchase.revoked"]] == ["dispute_opened", "dispute_lost"]
    (succeeded,) = by_type["generation.succeeded"]
    assert succeeded["generationId"] == ok["id"]
    (failed,) = by_type["generation.failed"]
    assert (failed["generationId"], failed["refunded"]) == (bad["id"], 80)
    assert failed["failureReason"] == "GPU out of memory"
    assert [e["kind"] for e in failed["ledgerEntries"]] == ["REFUND"]
    # ... and the deliveries read as delivered
    listed = await deliveries(api, endpoint_id, status="DELIVERED")
    assert len(listed) == len(events) and all(d["attempts"] == 1 for d in listed)


async def test_a_failing_receiver_is_retried_and_its_application_sees_the_event_once(
    api: Api, app: Any, clock: FrozenClock, receiver: Receiver
) -> None:
    # given a receiver that answers 500 to the first attempt and 200 after
    seen: set[str] = set()

    def first_fails(webhook_id: str) -> int:
        if webhook_id in seen:
            return 200
        seen.add(webhook_id)
        return 500

    receiver.answers = first_fails
    endpoint_id = await create_endpoint(api, receiver, ["GENERATION_FAILED"])
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="r")
    (job,) = await Worker(api).claim(1)
    await Worker(api).fail(job["id"])
    # when the worker passes, and again before the retry is due
    await deliver(app)
    await deliver(app)
    # then one attempt was made, and the retry waits 5 seconds
    (pending,) = await deliveries(api, endpoint_id)
    assert (pending["status"], pending["attempts"], pending["lastStatusCode"]) == (
        "PENDING",
        1,
        500,
    )
    assert len(receiver.requests) == 1
    # when the clock reaches the retry
    clock.advance(timedelta(seconds=5))
    await deliver(app)
    # then it is delivered, and the application handled the event once
    (done,) = await deliveries(api, endpoint_id)
    assert (done["status"], done["attempts"]) == ("DELIVERED", 2)
    assert [r.status for r in receiver.requests] == [500, 200]
    assert {r.webhook_id for r in receiver.requests} == {done["eventId"]}
    assert len(receiver.events()) == 1
    # ... and the metrics count both attempts, the latency from commit, an empty queue
    registry = app.state.metrics.registry
    for outcome, count in (("retrying", 1), ("delivered", 1)):
        labels = {"event_type": "generation.failed", "outcome": outcome}
        assert registry.get_sample_value("creditgate_webhook_deliveries_total", labels) == count
    latency = registry.get_sample_value(
        "creditgate_webhook_delivery_latency_seconds_sum", {"event_type": "generation.failed"}
    )
    assert latency == pytest.approx(5.0, abs=0.5)  # the clock moved 5 s for the retry
    assert registry.get_sample_value("creditgate_webhook_queue_depth") == 0
    # when it is redelivered by hand, the receiver dedupes by webhook-id
    again = (await api.as_service(REDELIVER, {"id": done["id"]}))["redeliverWebhook"]
    assert again["eventId"] == done["eventId"]
    await deliver(app)
    assert len(receiver.requests) == 3 and len(receiver.events()) == 1


async def test_a_hanging_receiver_times_out_and_the_others_are_still_delivered(
    make_api: ApiFactory, receiver: Receiver, rows: Rows
) -> None:
    # given one receiver that never answers and one that does (a 3 s timeout)
    api = await make_api(webhook_timeout_seconds=3.0)
    app: Any = api.client._transport.app  # type: ignore[attr-defined]
    hanging = Receiver().start()
    try:
        hanging.answers = lambda _id: HANG
        stuck = await create_endpoint(api, hanging, ["GENERATION_SUCCEEDED"])
        await create_endpoint(api, receiver, ["GENERATION_SUCCEEDED"])
        worker = Worker(api)
        for n in range(3):
            account_id = await api.subscribed_account()
            await api.run(account_id, "TURBO", key=f"r{n}")
        for job in await worker.claim(3):
            await worker.complete(job["id"])
        # when the worker passes
        await deliver(app)
        # then the answering receiver had every event before the hanging one's timeout
        assert len(receiver.events()) == 3
        first_hang = min(r.at for r in hanging.requests)
        assert max(r.at for r in receiver.requests) < first_hang + 3.0
        # ... and the hanging ones were cut off at the timeout, to be retried
        stuck_rows = await rows.all(
            "SELECT status, attempts, last_error FROM webhook_deliveries WHERE endpoint_id = :e",
            e=stuck,
        )
        assert len(stuck_rows) == 3
        assert all(r["status"] == "PENDING" for r in stuck_rows)
        tried = [r for r in stuck_rows if r["attempts"]]
        assert tried and all(r["last_error"] == "timeout after 3 s" for r in tried)
    finally:
        hanging.stop()


async def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(
    api: Api, app: Any, clock: FrozenClock, receiver: Receiver
) -> None:
    # given an endpoint whose secret was rotated
    endpoint_id = await create_endpoint(api, receiver, ["CREDITS_RENEWED"])
    (old,) = receiver.secrets
    rotated = (await api.as_service(ROTATE, {"id": endpoint_id}))["rotateWebhookSecret"]
    new = rotated["secret"]
    assert new != old and rotated["endpoint"]["previousSecretExpiresAt"]
    # when an event is sent during the overlap
    await api.subscribed_account()
    await deliver(app)
    # then its signature verifies with the old secret alone and with the new alone
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    receiver.verify(request.body, request.headers, old)
    receiver.verify(request.body, request.headers, new)
    # when the overlap is over, only the new secret signs (checked with the package's own
    # signing: the moved clock is a day ahead of the receiver's timestamp tolerance)
    clock.advance(timedelta(hours=24))
    await api.subscribed_account()
    await deliver(app)
    last = receiver.requests[-1]
    at = datetime.fromtimestamp(int(last.headers["webhook-timestamp"]), UTC)
    assert last.headers["webhook-signature"] == Webhook(new).sign(last.webhook_id, at, last.body)


async def test_an_endpoint_failing_for_five_days_is_disabled(
    api: Api, app: Any, clock: FrozenClock, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # given a receiver that always fails, and an event every day
    receiver.answers = lambda _id: 503
    endpoint_id = await create_endpoint(api, receiver, ["CREDITS_RENEWED"])
    caplog.set_level(logging.WARNING, logger="creditgate.webhooks")
    for day in range(6):
        await api.subscribed_account()
        await deliver(app)
        endpoints = (await api.as_service(ENDPOINTS))["webhookEndpoints"]
        # then it stays enabled for 5 days of failures, and is disabled after
        assert endpoints[0]["enabled"] is (day < 5), day
        clock.advance(timedelta(days=1))
    assert "webhook.endpoint_disabled" in caplog.text
    metrics = app.state.metrics.webhook_endpoints_disabled
    assert metrics._value.get() == 1
    # ... no more attempts are made to it until it is enabled again
    before = len(receiver.requests)
    await api.subscribed_account()
    await deliver(app)
    assert len(receiver.requests) == before
    receiver.answers = lambda _id: 200
    await api.as_service(UPDATE, {"id": endpoint_id, "enabled": True})
    await deliver(app)
    assert len(receiver.requests) > before


async def test_deliveries_page_with_cursors_and_endpoints_are_managed(
    api: Api, app: Any, receiver: Receiver, rows: Rows
) -> None:
    endpoint_id = await create_endpoint(api, receiver, ["CREDITS_RENEWED"])
    for _ in range(3):
        await api.subscribed_account()
    await deliver(app)
    # pages of two, newest first
    first = await api.as_service(
        """query($id: ID!) { webhookDeliveries(endpointId: $id, first: 2) {
        edges { node { id } } pageInfo { hasNextPage endCursor } } }""",
        {"id": endpoint_id},
    )
    page = first["webhookDeliveries"]
    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"]
    rest = await deliveries(api, endpoint_id, after=page["pageInfo"]["endCursor"])
    assert len(rest) == 1
    ids = [int(e["node"]["id"]) for e in page["edges"]] + [int(rest[0]["id"])]
    assert ids == sorted(ids, reverse=True)
    bad = await api.post(
        'query($id: ID!) { webhookDeliveries(endpointId: $id, after: "nope") { pageInfo '
        "{ hasNextPage } } }",
        {"id": endpoint_id},
        token=api.token(),
    )
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # a user token may not see endpoints
    account_id = await api.subscribed_account()
    refused = await api.post(ENDPOINTS, token=api.token(account_id))
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # the event types can change; deleting removes the endpoint and its deliveries
    updated = await api.as_service(UPDATE, {"id": endpoint_id, "types": ["PACK_PURCHASED"]})
    assert updated["updateWebhookEndpoint"]["eventTypes"] == ["PACK_PURCHASED"]
    assert (await api.as_service(DELETE, {"id": endpoint_id}))["deleteWebhookEndpoint"]
    assert (await api.as_service(ENDPOINTS))["webhookEndpoints"] == []
    assert await rows.all("SELECT id FROM webhook_deliveries") == []
    missing = await api.post(DELETE, {"id": endpoint_id}, token=api.token())
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_support_adjustments_cross_the_low_threshold_like_spends_and_name_the_bonus(
    api: Api, app: Any, receiver: Receiver
) -> None:
    # given an endpoint for balance alerts and a STARTER account (1000 credits, low below 100)
    await create_endpoint(api, receiver, ["CREDITS_LOW"])
    account_id = await api.create_account()
    await api.subscribe(account_id)
    # when support grants a bonus, then corrects the account down across the threshold
    granted = await adjust(api, account_id, 50, key="bonus")
    assert granted["__typename"] == "CreditsAdjusted"
    corrected = await adjust(api, account_id, -960, key="fix", reason="Double grant")
    assert corrected["account"]["creditsTotal"] == 90
    await deliver(app)
    # then one credits.low, caused by the adjustment, with the bonus in the balances
    (low,) = receiver.events()
    assert low["type"] == "credits.low" and low["data"]["reason"] == "adjustment"
    assert low["data"]["balances"] == {"subscription": 40, "pack": 0, "bonus": 50, "total": 90}
    assert {e["kind"] for e in low["data"]["ledgerEntries"]} == {"ADJUSTMENT"}
