"""Running generators: the cost leaves the balance at once and is held for the run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from app.domain.accounts import AccountView
from app.domain.aggregate import RunRequest, WritePlan, acting_at, plan_finish, plan_run
from app.domain.errors import AccountNotFound, GenerationNotFound, InvalidInput
from app.domain.events import GenerationUpdated
from app.domain.generations import Finish, is_stale
from app.domain.idempotency import fingerprint, validate_key
from app.domain.model import GenerationStatus, Plan, Tool
from app.domain.records import Generation
from app.persistence.plans import AccountMoved, EndingState, LockedAccount
from app.persistence.unit_of_work import UnitOfWork
from app.services.deps import Services
from app.services.mapping import generation_of, view_of_books
from app.services.webhook_events import plan_events

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
    request = RunRequest(
        tool=tool,
        cost=await services.tariffs.credits(services.db, tool),
        prompt=prompt,
        key=idempotency_key,
        operation=OPERATION,
        fingerprint=fingerprint(OPERATION, tool=tool.value, prompt=prompt),
        generation_id=str(uuid.uuid4()),
        active_limits={plan: services.plans.active_limit(plan) for plan in Plan},
    )
    # The driver lane on PostgreSQL: this transaction touches the account's state only. In
    # the account's turn among this process's runs, the state may be read without the lock
    # (``run_state``); if the account moved before the plan was written, nothing was, and
    # the state is read again under the lock.
    async with services.db.run_turn(account_id), services.db.writing(lane=True) as uow:
        while True:
            found = await uow.run_state(account_id, key=idempotency_key, caps=request.active_limits)
            if found is None:
                raise AccountNotFound(account_id)
            account, state = found
            plan = plan_run(state, request, services.clock.now())
            if plan.replay_of is not None:
                first = await uow.generation(plan.replay_of)
                assert first is not None
                return GeneratorRun(first, view_of_books(account, state, plan))
            try:
                await uow.write(plan, await plan_events(uow, services, state, plan))
            except AccountMoved:
                continue
            break
        await uow.commit()
    assert plan.new_generation is not None
    created = plan.new_generation
    generation = Generation(
        id=created.id,
        account_id=account_id,
        tool=created.tool,
        cost=created.cost,
        status=GenerationStatus.QUEUED,
        prompt=created.prompt,
        created_at=created.created_at,
    )
    return GeneratorRun(generation, view_of_books(account, state, plan))


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
) -> tuple[LockedAccount, EndingState]:
    """Lock order everywhere: the account row, then the generation row (no deadlocks).

    The generation, its account's state and its open holds are read after both locks, in
    one statement. With ``owner_id``, another account's generation reads as not found.
    """
    account = await uow.lock_owner_of_generation(generation_id)
    if account is None or (owner_id is not None and account.id != owner_id):
        raise GenerationNotFound(generation_id)
    return account, await uow.ending_state(account, generation_id)


async def _finish(
    generation_id: str,
    services: Services,
    finish: Finish,
    *,
    detail: str | None,
    owner_id: str | None = None,
) -> GenerationFinished:
    # The driver lane on PostgreSQL: this transaction touches the account's state only.
    async with services.db.writing(lane=True) as uow:
        account, ending = await lock_generation(uow, generation_id, owner_id=owner_id)
        state, generation = ending.state, ending.generation
        reading = services.clock.now()
        plan = plan_finish(state, generation, ending.holds, reading, finish, detail=detail)
        await uow.write(plan, await plan_events(uow, services, state, plan))
        await uow.commit()
    finished = finished_generation(generation, plan)
    return GenerationFinished(finished, view_of_books(account, state, plan))


def finished_generation(generation: Generation, plan: WritePlan) -> Generation:
    """The generation as the plan left it."""
    change = plan.generation_change
    assert change is not None
    return replace(
        generation,
        status=change.status,
        finished_at=change.finished_at,
        result_url=change.result_url or generation.result_url,
        failure_reason=change.failure_reason or generation.failure_reason,
    )


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
        async with services.db.writing(lane=True) as uow:
            _, ending = await lock_generation(uow, candidate.id)
            state, generation = ending.state, ending.generation
            now = acting_at(state, services.clock.now())
            if not is_stale(
                generation.status, generation.created_at, generation.started_at, now, timeout
            ):
                continue  # finished or claimed meanwhile
            plan = plan_finish(
                state, generation, ending.holds, now, Finish.FAIL, detail=TIMED_OUT, check=False
            )
            await uow.write(plan, await plan_events(uow, services, state, plan))
            await uow.commit()
            released += 1
    return released
