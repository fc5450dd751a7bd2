"""Running generators: the cost leaves the balance at once and is held for the run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.domain.accounts import AccountView
from app.domain.errors import InvalidInput
from app.domain.events import GenerationUpdated
from app.domain.idempotency import fingerprint, validate_key
from app.domain.model import Bucket, GenerationStatus, LedgerKind, Tool
from app.domain.records import Generation
from app.domain.spending import allocate
from app.persistence.tables import GenerationRow, HoldRow
from app.services.deps import Services
from app.services.idempotency import remember, replayed_result
from app.services.mapping import generation_of, lot_of, view_of
from app.services.wallets import Postings, bring_up_to_date, current_subscription, lock_account

OPERATION = "runGenerator"
MAX_PROMPT_LENGTH = 4000


@dataclass(frozen=True, slots=True)
class GeneratorRun:
    generation: Generation
    account: AccountView


def validate_prompt(prompt: str | None) -> str | None:
    if prompt is not None and (len(prompt) > MAX_PROMPT_LENGTH or any(c in prompt for c in "\x00")):
        raise InvalidInput(
            "prompt", f"prompt must be at most {MAX_PROMPT_LENGTH} characters, without NUL."
        )
    return prompt


async def run_generator(
    account_id: str, tool: Tool, idempotency_key: str, prompt: str | None, services: Services
) -> GeneratorRun:
    validate_key(idempotency_key)
    validate_prompt(prompt)
    request = fingerprint(OPERATION, tool=tool.value, prompt=prompt)
    now = services.clock.now()
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        subscription = await current_subscription(uow, account)
        first = await replayed_result(uow, account_id, idempotency_key, OPERATION, request)
        if first is not None:
            generation = await uow.generations.get(first)
            assert generation is not None
            return GeneratorRun(generation_of(generation), view_of(account, subscription, now))
        tariff = await uow.catalog.tariff(tool.value)
        if tariff is None:
            raise InvalidInput("tool", f"{tool.value} has no tariff.")
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, subscription, postings, now)
        lots = await uow.purchases.with_credits_left(account_id) if account.pack_balance else []
        portions = allocate(tariff.credits, account.subscription_balance, [lot_of(r) for r in lots])
        generation = GenerationRow(
            id=str(uuid.uuid4()),
            account_id=account_id,
            tool=tool.value,
            cost=tariff.credits,
            status=GenerationStatus.QUEUED.value,
            prompt=prompt,
            created_at=now,
        )
        uow.generations.add(generation)
        uow.publish(GenerationUpdated(generation.id, account_id))
        lots_by_id = {lot.id: lot for lot in lots}
        for portion in portions:
            lot = lots_by_id[portion.lot_id] if portion.lot_id else None
            postings.post(
                LedgerKind.SPEND,
                portion.bucket,
                -portion.amount,
                reference_type="GENERATION",
                reference_id=generation.id,
                lot=lot,
                tool=tool,
            )
            uow.holds.add(
                HoldRow(
                    generation_id=generation.id,
                    account_id=account_id,
                    bucket=portion.bucket.value,
                    lot_id=portion.lot_id,
                    cycle_index=account.cycle_index
                    if portion.bucket is Bucket.SUBSCRIPTION
                    else None,
                    amount=portion.amount,
                    status="OPEN",
                )
            )
        remember(uow, account_id, idempotency_key, OPERATION, request, generation.id, now)
        await uow.commit()
    return GeneratorRun(generation_of(generation), view_of(account, subscription, now))
