"""Running generators: the cost leaves the balance at once and is held for the run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.domain.accounts import AccountView
from app.domain.errors import GenerationNotFound, InvalidInput
from app.domain.events import GenerationUpdated
from app.domain.generations import Finish, check_can_finish, check_room_for_another, is_stale
from app.domain.holds import HeldPortion, release
from app.domain.idempotency import fingerprint, validate_key
from app.domain.model import Bucket, GenerationStatus, LedgerKind, Tool
from app.domain.records import Generation
from app.domain.spending import allocate
from app.persistence.tables import AccountRow, GenerationRow, HoldRow
from app.persistence.unit_of_work import UnitOfWork
from app.services.deps import Services
from app.services.idempotency import remember, replayed_result
from app.services.mapping import generation_of, lot_of, recorded_cycle_of, terms_of, view_of
from app.services.wallets import Postings, acting_now, bring_up_to_date, lock_account

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
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        subscription, now = await acting_now(uow, account, services.clock)
        first = await replayed_result(uow, account_id, idempotency_key, request)
        if first is not None:
            generation = await uow.generations.get(first)
            assert generation is not None
            return GeneratorRun(generation_of(generation), view_of(account, subscription, now))
        terms = terms_of(subscription)
        # Under the account lock, so concurrent runs cannot all see room for one more.
        active = await uow.generations.count_active(account_id)
        check_room_for_another(active, services.plans.active_limit(terms.plan if terms else None))
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
            from_subscription = portion.bucket is Bucket.SUBSCRIPTION
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
                    subscription_id=account.subscription_id if from_subscription else None,
                    cycle_index=account.cycle_index if from_subscription else None,
                    amount=portion.amount,
                    status="OPEN",
                )
            )
        remember(uow, account_id, idempotency_key, OPERATION, request, generation.id, now)
        await uow.commit()
    return GeneratorRun(generation_of(generation), view_of(account, subscription, now))


@dataclass(frozen=True, slots=True)
class GenerationFinished:
    generation: Generation
    account: AccountView


MAX_CLAIM = 100
MAX_RESULT_URL_LENGTH = 2048
MAX_REASON_LENGTH = 2000
TIMED_OUT = "Timed out: no worker finished it in time."


async def claim_generations(
    tools: list[Tool] | None, limit: int, services: Services
) -> list[Generation]:
    """Hand the oldest queued jobs to one worker: each job is claimed exactly once."""
    if not 1 <= limit <= MAX_CLAIM:
        raise InvalidInput("limit", f"limit must be between 1 and {MAX_CLAIM}.")
    now = services.clock.now()
    async with services.db.writing() as uow:
        rows = await uow.generations.claim_queued(
            [t.value for t in tools] if tools is not None else None, limit
        )
        for row in rows:
            row.status = GenerationStatus.RUNNING.value
            row.started_at = now
            uow.publish(GenerationUpdated(row.id, row.account_id))
        await uow.commit()
    return [generation_of(row) for row in rows]


async def complete_generation(
    generation_id: str, result_url: str, services: Services
) -> GenerationFinished:
    """Settle the hold as a spend: the credits were already taken, nothing moves now."""
    if not result_url.startswith(("https://", "http://")) or len(result_url) > (
        MAX_RESULT_URL_LENGTH
    ):
        raise InvalidInput("resultUrl", "resultUrl must be an http(s) URL of at most 2048 chars.")
    return await _finish(generation_id, services, Finish.COMPLETE, detail=result_url)


async def fail_generation(
    generation_id: str, reason: str, services: Services
) -> GenerationFinished:
    """Release the hold back to the buckets it came from, exactly once.

    A QUEUED job may be failed too: a dispatcher or safety check refusing the prompt.
    """
    if not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput("reason", f"reason must be 1 to {MAX_REASON_LENGTH} characters.")
    return await _finish(generation_id, services, Finish.FAIL, detail=reason)


async def cancel_generation(
    generation_id: str, owner_id: str | None, services: Services
) -> GenerationFinished:
    """Take back a run no worker has claimed yet; its credits go back as for a failure.

    ``owner_id``: the user token's account (another account's run reads as not found);
    None for a service token.
    """
    return await _finish(generation_id, services, Finish.CANCEL, detail=None, owner_id=owner_id)


async def lock_generation(
    uow: UnitOfWork, generation_id: str, *, owner_id: str | None = None
) -> tuple[AccountRow, GenerationRow]:
    """Lock order everywhere: the account row, then the generation row (no deadlocks).

    With ``owner_id``, another account's generation reads as not found.
    """
    found = await uow.generations.get(generation_id)
    if found is None or (owner_id is not None and found.account_id != owner_id):
        raise GenerationNotFound(generation_id)
    account = await lock_account(uow, found.account_id)
    row = await uow.generations.lock(generation_id)
    assert row is not None
    return account, row


async def _finish(
    generation_id: str,
    services: Services,
    finish: Finish,
    *,
    detail: str | None,
    owner_id: str | None = None,
) -> GenerationFinished:
    async with services.db.writing() as uow:
        account, row = await lock_generation(uow, generation_id, owner_id=owner_id)
        status = check_can_finish(generation_of(row), finish)
        subscription, now = await acting_now(uow, account, services.clock)
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, subscription, postings, now)
        if finish is Finish.COMPLETE:
            await settle_hold(uow, row)
            row.result_url = detail
        else:
            await release_hold(uow, account, row, postings)
            row.failure_reason = detail
        row.status = status.value
        row.finished_at = now
        uow.publish(GenerationUpdated(row.id, row.account_id))
        await uow.commit()
    return GenerationFinished(generation_of(row), view_of(account, subscription, now))


async def settle_hold(uow: UnitOfWork, generation: GenerationRow) -> None:
    for hold in await uow.holds.open_for(generation.id):
        hold.status = "SETTLED"


async def release_hold(
    uow: UnitOfWork,
    account: AccountRow,
    generation: GenerationRow,
    postings: Postings,
) -> None:
    """Refund each held portion; what comes back to an expired bucket expires at once.

    ``account`` must be brought up to date first: its recorded cycle decides, not a clock.
    """
    holds = await uow.holds.open_for(generation.id)
    lots = await uow.purchases.by_ids([h.lot_id for h in holds if h.lot_id])
    portions = [
        HeldPortion(
            Bucket(h.bucket),
            h.amount,
            cycle=(h.subscription_id, h.cycle_index),
            lot_id=h.lot_id,
            lot_expires_at=lots[h.lot_id].expires_at if h.lot_id else None,
        )
        for h in holds
    ]
    outcomes = release(portions, recorded_cycle_of(account))
    for hold, outcome in zip(holds, outcomes, strict=True):
        bucket, lot = Bucket(hold.bucket), lots.get(hold.lot_id or "")
        amounts = [hold.amount, -hold.amount] if outcome.expires else [hold.amount]
        for kind, amount in zip([LedgerKind.REFUND, LedgerKind.EXPIRY], amounts, strict=False):
            postings.post(
                kind,
                bucket,
                amount,
                reference_type="GENERATION",
                reference_id=generation.id,
                lot=lot,
                tool=Tool(generation.tool),
            )
        hold.status = "RELEASED"


async def release_stale_generations(services: Services, *, limit: int = 100) -> int:
    """Fail the jobs no worker finished within the timeout; returns how many were released.

    The first reading only picks candidates; each is judged again at its own account's
    acting instant, under that account's lock.
    """
    picked_at = services.clock.now()
    timeout = services.generation_timeout
    async with services.db.reading() as uow:
        stale = await uow.generations.unfinished_since(
            picked_at - timeout, picked_at - timeout, limit
        )
    released = 0
    for candidate in stale:
        async with services.db.writing() as uow:
            account, row = await lock_generation(uow, candidate.id)
            subscription, now = await acting_now(uow, account, services.clock)
            status = GenerationStatus(row.status)
            if not is_stale(status, row.created_at, row.started_at, now, timeout):
                continue  # finished or claimed meanwhile
            postings = Postings(uow, account, now)
            await bring_up_to_date(uow, account, subscription, postings, now)
            await release_hold(uow, account, row, postings)
            row.status = GenerationStatus.FAILED.value
            row.failure_reason = TIMED_OUT
            row.finished_at = now
            uow.publish(GenerationUpdated(row.id, row.account_id))
            await uow.commit()
            released += 1
    return released
