"""Reconciliation of pack purchases: credits granted only for money kept, and once."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.purchases import PurchaseStatus

ALWAYS_CREDITED = frozenset(
    {PurchaseStatus.FULFILLED, PurchaseStatus.DISPUTED, PurchaseStatus.REVOKED}
)
# REFUNDED may be either: refunded after it was credited, or refunded as undeliverable.
NEVER_CREDITED = frozenset(
    {
        PurchaseStatus.PENDING,
        PurchaseStatus.FAILED,
        PurchaseStatus.EXPIRED,
        PurchaseStatus.REFUND_PENDING,
    }
)


@dataclass(frozen=True, slots=True)
class PurchaseFacts:
    purchase_id: str
    status: str
    # Whether the purchase was ever credited (its fulfilment instant is set).
    credited: bool
    credits: int
    revoked_credits: int
    revocation_target: int
    # Ledger entries that name the purchase's lot.
    grants: int  # GRANT entries of the purchase itself (a dispute won's give-back excluded)
    granted: int  # their total
    # Credits REVOCATION entries took, less what won disputes and reversed refunds gave back.
    revoked: int
    entries: int  # every entry naming the lot


def purchase_findings(facts: PurchaseFacts) -> list[str]:
    found = []
    who = f"pack purchase {facts.purchase_id} ({facts.status})"
    status = PurchaseStatus(facts.status)
    if status in ALWAYS_CREDITED and not facts.credited:
        found.append(f"{who}: never credited")
    if status in NEVER_CREDITED and facts.credited:
        found.append(f"{who}: credited, though its payment never was")
    if facts.credited:
        if facts.grants != 1 or facts.granted != facts.credits:
            found.append(
                f"{who}: {facts.grants} grants of {facts.granted} credits, expected one of "
                f"{facts.credits}"
            )
    elif facts.entries:
        found.append(f"{who}: not credited, yet {facts.entries} ledger entries name it")
    if not 0 <= facts.revoked_credits <= facts.revocation_target <= facts.credits:
        found.append(
            f"{who}: revoked {facts.revoked_credits} of a target of {facts.revocation_target} "
            f"for a pack of {facts.credits}"
        )
    if facts.revoked != facts.revoked_credits:
        found.append(
            f"{who}: revokedCredits {facts.revoked_credits} but the ledger revoked {facts.revoked}"
        )
    return found


def shared_payment_findings(shared: list[tuple[str, str, int]]) -> list[str]:
    """One provider payment pays for one purchase at most."""
    return [
        f"{provider} payment {reference} is claimed by {count} purchases"
        for provider, reference, count in shared
    ]
