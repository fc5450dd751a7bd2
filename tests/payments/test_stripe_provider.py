"""The Stripe adapter through the real SDK, against the loopback fake Stripe."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import stripe

from app.clock import FrozenClock
from app.domain.purchases import PaymentState
from app.payments import stripe_provider as stripe_provider_module
from app.payments.port import (
    CheckoutRequest,
    DisputeState,
    EventKind,
    InvalidWebhook,
    ProviderUnavailable,
    Reversal,
    ReversalKind,
)
from app.payments.stripe_provider import (
    PaymentObjectNotFound,
    StripeProvider,
    StripeRequestRejected,
)
from tests.payments.conftest import WEBHOOK_SECRET, make_provider
from tests.payments.fake_stripe import FakeStripe, decode_form, session_expiry


def purchase(purchase_id: str = "pur-1", amount_cents: int = 500) -> CheckoutRequest:
    return CheckoutRequest(
        purchase_id=purchase_id,
        account_id="acc-1",
        pack_id="pack-500",
        credits=500,
        amount_cents=amount_cents,
        currency="EUR",
    )


async def paid_checkout(
    provider: StripeProvider, fake: FakeStripe, purchase_id: str = "pur-1"
) -> tuple[str, str, str]:
    """A checkout the customer paid: (session id, payment intent id, charge id)."""
    checkout = await provider.create_checkout(purchase(purchase_id))
    session = fake.pay(checkout.session_id)
    intent_id = session["payment_intent"]
    return checkout.session_id, intent_id, fake.payment_intents[intent_id]["latest_charge"]


def test_the_fake_decodes_stripes_nested_form_keys() -> None:
    pairs = [
        ("line_items[0][price_data][unit_amount]", "500"),
        ("line_items[0][quantity]", "1"),
        ("metadata[purchase_id]", "p"),
        ("expand[]", "refunds"),
        ("expand[]", "payment_intent"),
    ]
    assert decode_form(pairs) == {
        "line_items": [{"price_data": {"unit_amount": "500"}, "quantity": "1"}],
        "metadata": {"purchase_id": "p"},
        "expand": ["refunds", "payment_intent"],
    }


# -- checkout ----------------------------------------------------------------------------


async def test_checkout_names_the_purchase_on_the_session_and_on_its_payment_intent(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    checkout = await stripe_provider.create_checkout(purchase())

    params = fake_stripe.checkout_params[checkout.session_id]
    named = {"purchase_id": "pur-1", "account_id": "acc-1", "pack_id": "pack-500"}
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == "pur-1"
    assert params["metadata"] == named
    assert params["payment_intent_data"] == {"metadata": named}
    assert params["line_items"] == [
        {
            "price_data": {
                "currency": "eur",
                "unit_amount": "500",
                "product_data": {"name": "500 credits"},
            },
            "quantity": "1",
        }
    ]
    assert checkout.url == f"https://checkout.stripe.com/c/pay/{checkout.session_id}"
    assert checkout.payment is None


async def test_checkout_expires_thirty_minutes_from_the_clock_plus_a_margin_for_stripe(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe, clock: FrozenClock
) -> None:
    clock.advance(timedelta(days=40))  # the clock decides, not the wall

    checkout = await stripe_provider.create_checkout(purchase())

    expires = session_expiry(fake_stripe, checkout.session_id)
    assert expires == clock.now() + timedelta(minutes=31)
    # Stripe's own floor: at least 30 minutes after it creates the session.
    assert fake_stripe.sessions[checkout.session_id]["created"] + 1800 < expires.timestamp()


async def test_checkout_urls_carry_the_purchase_id_and_keep_stripes_session_placeholder(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    checkout = await stripe_provider.create_checkout(purchase("pur-42"))

    session = fake_stripe.sessions[checkout.session_id]
    assert session["success_url"] == (
        "https://app.example/purchases/pur-42?session={CHECKOUT_SESSION_ID}"
    )
    assert session["cancel_url"] == "https://app.example/purchases/pur-42/cancelled"


async def test_checkout_retried_for_the_same_purchase_returns_the_same_session(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    first = await stripe_provider.create_checkout(purchase())
    again = await stripe_provider.create_checkout(purchase())

    assert again.session_id == first.session_id
    assert again.url == first.url
    assert len(fake_stripe.sessions) == 1
    keys = [r.idempotency_key for r in fake_stripe.requests if r.method == "POST"]
    assert keys == ["checkout:pur-1", "checkout:pur-1"]


async def test_checkout_retried_after_the_clock_moved_finds_the_session_its_key_made(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe, clock: FrozenClock
) -> None:
    # given a checkout whose answer was lost (a timeout, a crash before the commit)
    first = await stripe_provider.create_checkout(purchase())
    await stripe_provider.create_checkout(purchase("pur-other"))
    clock.advance(timedelta(minutes=5))

    # when the retry's expires_at differs, so Stripe refuses to replay the key
    again = await stripe_provider.create_checkout(purchase())

    # then the session the key made is found, and no second one is made
    assert (again.session_id, again.url) == (first.session_id, first.url)
    assert len(fake_stripe.sessions) == 2
    assert [r.method for r in fake_stripe.requests if r.path == "/v1/checkout/sessions"] == [
        "POST",
        "POST",
        "POST",
        "GET",
    ]


async def test_checkout_retried_finds_its_session_beyond_the_first_page_of_sessions(
    stripe_provider: StripeProvider,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stripe_provider_module, "SESSION_PAGE", 2)
    first = await stripe_provider.create_checkout(purchase())
    later = [await stripe_provider.create_checkout(purchase(f"pur-later-{n}")) for n in range(5)]
    clock.advance(timedelta(minutes=5))

    again = await stripe_provider.create_checkout(purchase())

    assert again.session_id == first.session_id
    # Newest first, two a page: later 4-3, later 2-1, then later 0 and the one sought.
    pages = [r.params.get("starting_after") for r in fake_stripe.requests if r.method == "GET"]
    assert pages == [None, later[3].session_id, later[1].session_id]


async def test_checkout_conflict_whose_session_is_gone_is_refused_not_made_twice(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe, clock: FrozenClock
) -> None:
    # Stripe keeps keys at least 24 hours; the session is older than the search window.
    await stripe_provider.create_checkout(purchase())
    clock.advance(timedelta(hours=26))

    with pytest.raises(StripeRequestRejected) as refused:
        await stripe_provider.create_checkout(purchase())

    assert refused.value.code == "idempotency_error"
    assert len(fake_stripe.sessions) == 1


async def test_checkouts_for_two_purchases_are_two_sessions(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    one = await stripe_provider.create_checkout(purchase("pur-1"))
    two = await stripe_provider.create_checkout(purchase("pur-2"))

    assert one.session_id != two.session_id
    assert len(fake_stripe.sessions) == 2


# -- fetch_payment -----------------------------------------------------------------------


async def test_an_unpaid_session_is_open_and_names_its_purchase_and_price(
    stripe_provider: StripeProvider,
) -> None:
    checkout = await stripe_provider.create_checkout(purchase())

    payment = await stripe_provider.fetch_payment(checkout.session_id)

    assert payment.session_id == checkout.session_id
    assert payment.state is PaymentState.OPEN
    assert (payment.purchase_id, payment.amount_cents, payment.currency) == ("pur-1", 500, "EUR")
    assert payment.payment_reference is None


async def test_a_paid_session_is_paid_with_its_payment_intent_as_reference(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    session_id, intent_id, _ = await paid_checkout(stripe_provider, fake_stripe)

    payment = await stripe_provider.fetch_payment(session_id)

    assert payment.state is PaymentState.PAID
    assert payment.payment_reference == intent_id
    assert intent_id.startswith("pi_")
    assert (payment.purchase_id, payment.amount_cents, payment.currency) == ("pur-1", 500, "EUR")


async def test_a_paid_session_reports_the_amount_stripe_charged_not_the_catalog_price(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    checkout = await stripe_provider.create_checkout(purchase())
    fake_stripe.pay(checkout.session_id, amount_total=499)

    payment = await stripe_provider.fetch_payment(checkout.session_id)

    assert (payment.state, payment.amount_cents) == (PaymentState.PAID, 499)


async def test_a_session_whose_bank_debit_is_processing_stays_open(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    checkout = await stripe_provider.create_checkout(purchase())
    fake_stripe.start_async(checkout.session_id)

    payment = await stripe_provider.fetch_payment(checkout.session_id)

    assert payment.state is PaymentState.OPEN


async def test_a_session_whose_bank_debit_bounced_has_failed(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    checkout = await stripe_provider.create_checkout(purchase())
    fake_stripe.start_async(checkout.session_id)
    fake_stripe.fail_async(checkout.session_id)

    payment = await stripe_provider.fetch_payment(checkout.session_id)

    assert payment.state is PaymentState.FAILED


async def test_a_bank_debit_that_clears_later_is_paid(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    checkout = await stripe_provider.create_checkout(purchase())
    fake_stripe.start_async(checkout.session_id)
    fake_stripe.pay(checkout.session_id)

    payment = await stripe_provider.fetch_payment(checkout.session_id)

    assert payment.state is PaymentState.PAID


async def test_an_expired_session_is_expired(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    checkout = await stripe_provider.create_checkout(purchase())
    fake_stripe.expire(checkout.session_id)

    payment = await stripe_provider.fetch_payment(checkout.session_id)

    assert payment.state is PaymentState.EXPIRED


async def test_an_unknown_session_is_a_lookup_error_not_an_outage(
    stripe_provider: StripeProvider,
) -> None:
    with pytest.raises(PaymentObjectNotFound) as missing:
        await stripe_provider.fetch_payment("cs_test_not_ours")

    assert isinstance(missing.value, LookupError)
    assert missing.value.object_id == "cs_test_not_ours"


# -- refunds and disputes ----------------------------------------------------------------


async def test_a_refund_is_keyed_by_the_purchase_so_a_retry_refunds_once(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, intent_id, charge_id = await paid_checkout(stripe_provider, fake_stripe)

    first = await stripe_provider.refund(intent_id, purchase_id="pur-1")
    again = await stripe_provider.refund(intent_id, purchase_id="pur-1")

    assert first == again == Reversal(ReversalKind.REFUND, first.reversal_id, intent_id, 500)
    assert list(fake_stripe.refunds) == [first.reversal_id]
    assert fake_stripe.refunds[first.reversal_id]["metadata"] == {"purchase_id": "pur-1"}
    assert fake_stripe.charges[charge_id]["refunded"] is True
    keys = [r.idempotency_key for r in fake_stripe.requests if r.path == "/v1/refunds"]
    assert keys == ["refund:pur-1", "refund:pur-1"]


async def test_refunding_a_payment_already_refunded_in_the_dashboard_is_refused_with_its_code(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, intent_id, charge_id = await paid_checkout(stripe_provider, fake_stripe)
    fake_stripe.refund_charge(charge_id, 500)

    with pytest.raises(StripeRequestRejected) as refused:
        await stripe_provider.refund(intent_id, purchase_id="pur-1")

    assert refused.value.code == "charge_already_refunded"


async def test_refunds_of_a_charge_are_its_succeeded_refunds_only(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, intent_id, charge_id = await paid_checkout(stripe_provider, fake_stripe)
    partial = fake_stripe.refund_charge(charge_id, 200)
    fake_stripe.refund_charge(charge_id, 100, status="pending")

    refunds = await stripe_provider.fetch_refunds(charge_id)

    assert refunds == [Reversal(ReversalKind.REFUND, partial["id"], intent_id, 200)]


async def test_refunds_of_a_charge_are_read_past_the_ten_stripe_embeds(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, _, charge_id = await paid_checkout(stripe_provider, fake_stripe)
    made = [fake_stripe.refund_charge(charge_id, 10)["id"] for _ in range(12)]

    refunds = await stripe_provider.fetch_refunds(charge_id)

    assert sorted(r.reversal_id for r in refunds) == sorted(made)
    assert [r.path for r in fake_stripe.requests][-2:] == [
        f"/v1/charges/{charge_id}",
        "/v1/refunds",
    ]


async def test_a_charge_without_refunds_has_none(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, _, charge_id = await paid_checkout(stripe_provider, fake_stripe)

    assert await stripe_provider.fetch_refunds(charge_id) == []


async def test_a_dispute_is_open_then_won_or_lost_as_stripe_closes_it(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, intent_id, charge_id = await paid_checkout(stripe_provider, fake_stripe)
    won = fake_stripe.open_dispute(charge_id)
    lost = fake_stripe.open_dispute(charge_id, amount=300)

    opened = await stripe_provider.fetch_dispute(won["id"])
    fake_stripe.close_dispute(won["id"], won=True)
    fake_stripe.close_dispute(lost["id"], won=False)

    assert opened == Reversal(ReversalKind.DISPUTE, won["id"], intent_id, 500, DisputeState.OPEN)
    assert (await stripe_provider.fetch_dispute(won["id"])).dispute_state is DisputeState.WON
    closed = await stripe_provider.fetch_dispute(lost["id"])
    assert (closed.dispute_state, closed.amount_cents) == (DisputeState.LOST, 300)


async def test_a_dispute_without_a_payment_intent_finds_it_through_its_charge(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, intent_id, charge_id = await paid_checkout(stripe_provider, fake_stripe)
    dispute = fake_stripe.open_dispute(charge_id)
    fake_stripe.disputes[dispute["id"]]["payment_intent"] = None

    found = await stripe_provider.fetch_dispute(dispute["id"])

    assert found.payment_reference == intent_id


async def test_an_inquiry_closed_without_a_chargeback_counts_as_won(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    _, _, charge_id = await paid_checkout(stripe_provider, fake_stripe)
    dispute = fake_stripe.open_dispute(charge_id)
    fake_stripe.disputes[dispute["id"]]["status"] = "warning_closed"

    found = await stripe_provider.fetch_dispute(dispute["id"])

    assert found.dispute_state is DisputeState.WON


# -- transient failures ------------------------------------------------------------------


async def test_one_stripe_500_is_retried_by_the_sdk_with_the_same_idempotency_key(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_next(1)

    checkout = await stripe_provider.create_checkout(purchase())

    assert list(fake_stripe.sessions) == [checkout.session_id]
    posts = [(r.path, r.idempotency_key) for r in fake_stripe.requests]
    assert posts == [("/v1/checkout/sessions", "checkout:pur-1")] * 2


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_stripe_failing_or_rate_limiting_is_provider_unavailable(
    fake_stripe: FakeStripe, clock: FrozenClock, status: int
) -> None:
    provider = make_provider(fake_stripe, clock, max_network_retries=0)
    try:
        fake_stripe.fail_next(3, status=status)
        with pytest.raises(ProviderUnavailable):
            await provider.create_checkout(purchase())
        with pytest.raises(ProviderUnavailable):
            await provider.fetch_payment("cs_test_x")
        with pytest.raises(ProviderUnavailable):
            await provider.refund("pi_x", purchase_id="pur-1")
        assert fake_stripe.sessions == {}
        assert fake_stripe.refunds == {}
    finally:
        await provider.aclose()


async def test_stripe_unreachable_is_provider_unavailable(
    fake_stripe: FakeStripe, clock: FrozenClock
) -> None:
    provider = make_provider(fake_stripe, clock, max_network_retries=0)
    fake_stripe.stop()
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.fetch_dispute("dp_x")
    finally:
        await provider.aclose()


async def test_a_refused_api_key_is_provider_unavailable_until_an_operator_fixes_it(
    fake_stripe: FakeStripe, clock: FrozenClock
) -> None:
    fake_stripe.secret_key = "sk_test_rotated"
    provider = make_provider(fake_stripe, clock, max_network_retries=0)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.create_checkout(purchase())
    finally:
        await provider.aclose()


# -- webhooks ----------------------------------------------------------------------------


async def test_a_well_signed_event_is_verified_and_names_what_to_re_read(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    session_id, intent_id, _ = await paid_checkout(stripe_provider, fake_stripe)
    body, headers = fake_stripe.signed_event(
        "checkout.session.completed",
        fake_stripe.sessions[session_id],
        secret=WEBHOOK_SECRET,
        event_id="evt_1",
    )

    event = stripe_provider.verify_webhook(body, headers)

    assert (event.event_id, event.event_type, event.kind) == (
        "evt_1",
        "checkout.session.completed",
        EventKind.PAYMENT,
    )
    assert (event.object_id, event.purchase_id) == (session_id, "pur-1")
    assert event.extra == {"payment_reference": intent_id}


def test_the_signature_header_is_found_whatever_its_case(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    body, headers = fake_stripe.signed_event(
        "checkout.session.expired", {"id": "cs_test_1"}, secret=WEBHOOK_SECRET
    )

    event = stripe_provider.verify_webhook(body, {"Stripe-Signature": headers["stripe-signature"]})

    assert event.kind is EventKind.PAYMENT


def test_an_event_signed_with_another_secret_is_refused(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    body, headers = fake_stripe.signed_event(
        "checkout.session.completed", {"id": "cs_test_1"}, secret="whsec_forged"
    )

    with pytest.raises(InvalidWebhook):
        stripe_provider.verify_webhook(body, headers)


def test_an_event_signed_more_than_five_minutes_ago_is_refused(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    body, headers = fake_stripe.signed_event(
        "checkout.session.completed",
        {"id": "cs_test_1"},
        secret=WEBHOOK_SECRET,
        timestamp=int(time.time()) - 301,
    )

    with pytest.raises(InvalidWebhook):
        stripe_provider.verify_webhook(body, headers)


def test_an_event_whose_body_was_tampered_with_is_refused(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe
) -> None:
    body, headers = fake_stripe.signed_event(
        "checkout.session.completed",
        {"id": "cs_test_1", "client_reference_id": "pur-1"},
        secret=WEBHOOK_SECRET,
    )
    tampered = body.replace(b"pur-1", b"pur-2")

    with pytest.raises(InvalidWebhook):
        stripe_provider.verify_webhook(tampered, headers)


@pytest.mark.parametrize("headers", [{}, {"stripe-signature": ""}, {"stripe-signature": "garbage"}])
def test_an_event_without_a_usable_signature_header_is_refused(
    stripe_provider: StripeProvider, fake_stripe: FakeStripe, headers: dict[str, str]
) -> None:
    body, _ = fake_stripe.signed_event(
        "checkout.session.completed", {"id": "cs_test_1"}, secret=WEBHOOK_SECRET
    )

    with pytest.raises(InvalidWebhook):
        stripe_provider.verify_webhook(body, headers)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'"event"',
        b"{}",
        b'{"id": 1, "type": "charge.refunded"}',
        b'{"id": "evt_1", "type": "charge.refunded", "data": {"object": [1]}}',
        b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}}',
    ],
)
def test_a_well_signed_body_that_is_not_a_usable_event_is_refused(
    stripe_provider: StripeProvider, body: bytes
) -> None:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)

    with pytest.raises(InvalidWebhook):
        stripe_provider.verify_webhook(body, {"stripe-signature": header})


CHARGE = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1"}
DISPUTE = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": "pi_1"}
SESSION = {"id": "cs_test_1", "object": "checkout.session", "client_reference_id": "pur-1"}


@pytest.mark.parametrize(
    ("event_type", "obj", "kind", "object_id"),
    [
        ("checkout.session.completed", SESSION, EventKind.PAYMENT, "cs_test_1"),
        ("checkout.session.async_payment_succeeded", SESSION, EventKind.PAYMENT, "cs_test_1"),
        ("checkout.session.async_payment_failed", SESSION, EventKind.PAYMENT, "cs_test_1"),
        ("checkout.session.expired", SESSION, EventKind.PAYMENT, "cs_test_1"),
        ("charge.refunded", CHARGE, EventKind.REFUNDS, "ch_1"),
        (
            "charge.refund.updated",
            {"id": "re_1", "object": "refund", "charge": "ch_1", "payment_intent": "pi_1"},
            EventKind.REFUNDS,
            "ch_1",
        ),
        ("charge.dispute.created", DISPUTE, EventKind.DISPUTE, "dp_1"),
        ("charge.dispute.closed", DISPUTE, EventKind.DISPUTE, "dp_1"),
        # Fires beside checkout.session.completed for the same payment: never a grant.
        (
            "payment_intent.succeeded",
            {"id": "pi_1", "object": "payment_intent", "metadata": {"purchase_id": "pur-1"}},
            EventKind.IGNORED,
            None,
        ),
        ("customer.created", {"id": "cus_1", "object": "customer"}, EventKind.IGNORED, None),
    ],
)
def test_each_event_type_maps_to_what_must_be_re_read(
    stripe_provider: StripeProvider,
    fake_stripe: FakeStripe,
    event_type: str,
    obj: dict[str, Any],
    kind: EventKind,
    object_id: str | None,
) -> None:
    body, headers = fake_stripe.signed_event(event_type, obj, secret=WEBHOOK_SECRET)

    event = stripe_provider.verify_webhook(body, headers)

    assert (event.event_type, event.kind, event.object_id) == (event_type, kind, object_id)
    if kind is EventKind.PAYMENT:
        assert event.purchase_id == "pur-1"
