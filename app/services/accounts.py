"""Creating accounts and reading them as clients see them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from app.domain.accounts import AccountView, account_view
from app.domain.errors import AccountNotFound, EmailTaken, InvalidInput
from app.persistence.tables import AccountRow
from app.services.deps import Services
from app.services.mapping import view_of

MAX_EMAIL_LENGTH = 320


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if (
        not local
        or "." not in domain
        or len(email) > MAX_EMAIL_LENGTH
        or any(c.isspace() or not c.isprintable() for c in email)
    ):
        raise InvalidInput("email", "email must be an address like name@example.com.")
    return email


async def create_account(email: str, services: Services) -> AccountView:
    email = normalize_email(email)
    now = services.clock.now()
    try:
        async with services.db.writing() as uow:
            if await uow.accounts.email_exists(email):
                raise EmailTaken(email)
            account = AccountRow(id=str(uuid.uuid4()), email=email, created_at=now)
            uow.accounts.add(account)
            await uow.commit()
    except IntegrityError:
        # Two creations with one email both passed the check; the unique index let one in.
        # Said as the domain says it, once the other one is there to be seen.
        async with services.db.reading() as uow:
            if await uow.accounts.email_exists(email):
                raise EmailTaken(email) from None
        raise
    return view_of(account, None, now)


async def load_accounts(ids: Sequence[str], services: Services) -> list[AccountView | None]:
    """Accounts in the order asked, None where none exists; one query whatever the count."""
    now = services.clock.now()
    found = {
        stored.id: account_view(
            account_id=stored.id,
            email=stored.email,
            created_at=stored.created_at,
            wallet=stored.wallet,
            subscription_id=stored.subscription_id,
            terms=stored.terms,
            now=now,
            bonus_lots=stored.bonus_lots,
        )
        for stored in await services.db.stored_accounts(ids)
    }
    return [found.get(account_id) for account_id in ids]


async def get_account(account_id: str, services: Services) -> AccountView:
    (view,) = await load_accounts([account_id], services)
    if view is None:
        raise AccountNotFound(account_id)
    return view
