"""A fake Stripe on a loopback port per test, and the real adapter pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from app.clock import FrozenClock
from app.payments.stripe_provider import StripeProvider
from tests.payments.fake_stripe import FakeStripe

STRIPE_SECRET_KEY = "sk_test_creditgate"
WEBHOOK_SECRET = "whsec_test_creditgate"
SUCCESS_URL = "https://app.example/purchases/{PURCHASE_ID}?session={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://app.example/purchases/{PURCHASE_ID}/cancelled"


@pytest.fixture
def fake_stripe(clock: FrozenClock) -> Iterator[FakeStripe]:
    fake = FakeStripe(secret_key=STRIPE_SECRET_KEY, clock=clock).start()
    yield fake
    fake.stop()


def make_provider(
    fake: FakeStripe, clock: FrozenClock, *, max_network_retries: int = 2
) -> StripeProvider:
    return StripeProvider(
        secret_key=STRIPE_SECRET_KEY,
        webhook_secret=WEBHOOK_SECRET,
        api_base=fake.api_base,
        success_url=SUCCESS_URL,
        cancel_url=CANCEL_URL,
        clock=clock,
        max_network_retries=max_network_retries,
    )


@pytest.fixture
async def stripe_provider(
    fake_stripe: FakeStripe, clock: FrozenClock
) -> AsyncIterator[StripeProvider]:
    provider = make_provider(fake_stripe, clock)
    yield provider
    await provider.aclose()
