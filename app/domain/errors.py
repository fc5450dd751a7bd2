"""Errors in the business's words. Each carries the data a client needs to act on it.

CreditError                 base of every expected failure
├── InvalidInput            an argument is malformed (empty key, date in the future, ...)
├── AccountNotFound         no account with that id
├── EmailTaken              an account with that email exists
├── PackNotFound            no credit pack with that id
├── SubscriptionRequired    a pack needs an active subscription
├── SubscriptionAlreadyActive  a second subscription while one is active
├── NoActiveSubscription    nothing to cancel
├── InsufficientCredits     creditsTotal below the cost; nothing was charged
├── IdempotencyConflict     a key reused with other arguments
├── GenerationNotFound      no generation with that id
├── InvalidTransition       a generation is not in a state that allows the change
├── TooManyActiveGenerations  the plan's cap on runs queued or running at once is reached
├── PurchaseNotFound        no pack purchase with that id (or not the caller's)
├── PaymentProviderUnavailable  the payment provider could not be reached; retry the key
├── StorePurchaseInvalid    a store proof refused (forged, another app or account, ...)
├── StorePurchaseAlreadyRedeemed  a store proof already credited to another account
├── WebhookEndpointNotFound  no webhook endpoint with that id
├── WebhookDeliveryNotFound  no webhook delivery with that id
└── DatabaseUnavailable     the database could not be reached or the connection broke
                            (a failover); the outcome is unknown: retry with the key
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.domain.records import Generation
    from app.domain.store_purchases import StoreProblem


class CreditError(Exception):
    """Base of expected, typed failures; the message is safe to show to clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(CreditError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AccountNotFound(CreditError):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"Account {account_id} does not exist.")
        self.account_id = account_id


class EmailTaken(CreditError):
    def __init__(self, email: str) -> None:
        super().__init__(f"An account with email {email} already exists.")
        self.email = email


class PackNotFound(CreditError):
    def __init__(self, pack_id: str) -> None:
        super().__init__(f"Credit pack {pack_id} does not exist.")
        self.pack_id = pack_id


class SubscriptionRequired(CreditError):
    def __init__(self) -> None:
        super().__init__("Credit packs can be bought only with an active STARTER or PRO plan.")


class SubscriptionAlreadyActive(CreditError):
    def __init__(self) -> None:
        super().__init__("The account already has an active subscription; cancel it first.")


class NoActiveSubscription(CreditError):
    def __init__(self) -> None:
        super().__init__("The account has no active subscription to cancel.")


class InsufficientCredits(CreditError):
    def __init__(self, required: int, available: int, *, what: str = "This run costs") -> None:
        super().__init__(f"{what} {required} credits; {available} are available.")
        self.required = required
        self.available = available


class IdempotencyConflict(CreditError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency key {key!r} was already used with different arguments.")
        self.key = key


class GenerationNotFound(CreditError):
    def __init__(self, generation_id: str) -> None:
        super().__init__(f"Generation {generation_id} does not exist.")
        self.generation_id = generation_id


class InvalidTransition(CreditError):
    """Carries the generation as it stands, so a late or repeated call learns its state."""

    def __init__(self, generation: Generation, action: str) -> None:
        super().__init__(
            f"Generation {generation.id} is {generation.status.value}; it cannot be {action}."
        )
        self.generation = generation
        self.action = action


class PurchaseNotFound(CreditError):
    def __init__(self, purchase_id: str) -> None:
        super().__init__(f"Pack purchase {purchase_id} does not exist.")
        self.purchase_id = purchase_id


class PaymentProviderUnavailable(CreditError):
    def __init__(self) -> None:
        super().__init__(
            "The payment provider could not be reached; nothing was charged. "
            "Retry with the same idempotency key."
        )


class DatabaseUnavailable(CreditError):
    """Not a wrong answer: no answer. A write whose connection broke may or may not have
    committed; the same idempotency key finds out (it replays the result, or applies it)."""

    def __init__(self) -> None:
        super().__init__(
            "The database could not be reached or the connection broke; the outcome is "
            "unknown. Try again, with the same idempotency key for a mutation."
        )


class TooManyActiveGenerations(CreditError):
    def __init__(self, limit: int, active: int) -> None:
        super().__init__(
            f"Your plan runs at most {limit} generations at once and {active} are queued or "
            "running; wait for one to finish or cancel one."
        )
        self.limit = limit
        self.active = active


class StorePurchaseInvalid(CreditError):
    """The store proof cannot be credited; ``reason`` says why (a StoreProblem)."""

    def __init__(self, reason: StoreProblem, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StorePurchaseAlreadyRedeemed(CreditError):
    def __init__(self) -> None:
        super().__init__(
            "This store purchase was already credited to another account; nothing was credited."
        )


class WebhookEndpointNotFound(CreditError):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"Webhook endpoint {endpoint_id} does not exist.")
        self.endpoint_id = endpoint_id


class WebhookDeliveryNotFound(CreditError):
    def __init__(self, delivery_id: int | str) -> None:
        super().__init__(f"Webhook delivery {delivery_id} does not exist.")
        self.delivery_id = delivery_id
