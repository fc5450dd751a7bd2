"""`creditgate audit` proves balances and ledger agree, and catches tampered rows."""

from datetime import timedelta
from pathlib import Path

import pytest

from app.clock import FrozenClock
from app.services.audit import run_audit
from tests.api.test_adjustments import adjust
from tests.api_client import Api, Worker
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import audit


async def busy_history(api: Api, clock: FrozenClock) -> str:
    worker = Worker(api)
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    runs = []
    for i in range(14):
        clock.advance(timedelta(seconds=1))
        runs.append((await api.run(account_id, "ULTRA", key=f"r{i}"))["generation"]["id"])
    await worker.claim(limit=3)
    assert (await worker.complete(runs[0]))["__typename"] == "GenerationCompleted"
    assert (await worker.fail(runs[1]))["__typename"] == "GenerationFailed"
    clock.advance(timedelta(days=40))
    assert (await worker.fail(runs[2]))["__typename"] == "GenerationFailed"
    return account_id


async def test_audit_passes_on_a_busy_history(
    api: Api, clock: FrozenClock, app: object, database_url: str, tmp_path: Path
) -> None:
    await busy_history(api, clock)
    report = await run_audit(app.state.services)  # type: ignore[attr-defined]
    assert report.findings == []
    assert (report.accounts, report.generations) == (1, 14)
    result = audit(database_url, JWT_SECRET, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("audit OK: 1 accounts, 1 pack purchases, 14 generations")


@pytest.mark.parametrize(
    ("corruption", "finding"),
    [
        ("UPDATE accounts SET subscription_balance = subscription_balance + 5", "ledger says"),
        ("UPDATE pack_purchases SET remaining = remaining + 7", "its packs hold"),
        ("UPDATE holds SET status = 'RELEASED' WHERE status = 'OPEN'", "but its holds are"),
        ("UPDATE generations SET status = 'SUCCEEDED' WHERE status = 'FAILED'", "refunded"),
    ],
)
async def test_audit_catches_a_corrupted_row_and_exits_non_zero(
    api: Api,
    clock: FrozenClock,
    rows: Rows,
    database_url: str,
    tmp_path: Path,
    corruption: str,
    finding: str,
) -> None:
    await busy_history(api, clock)
    await rows.execute(corruption)
    result = audit(database_url, JWT_SECRET, tmp_path)
    assert result.returncode == 1
    assert "MISMATCHES" in result.stdout
    assert finding in result.stdout


async def renewed_history_with_a_live_pack(api: Api, clock: FrozenClock) -> str:
    """A busy history recorded into the second cycle, with a pack bought in that cycle."""
    account_id = await busy_history(api, clock)
    bought = await api.buy(account_id, key="second-cycle")
    assert bought["__typename"] == "PackPurchased"
    return account_id


@pytest.mark.parametrize(
    ("corruption", "finding"),
    [
        # a lot still holding credits though its expiry is before the account's cycle
        (
            "UPDATE pack_purchases SET expires_at = purchased_at WHERE remaining > 0",
            "past its expiry",
        ),
        # subscription credits the account holds with no cycle to hold them in
        ("UPDATE accounts SET cycle_index = NULL, cycle_ends_at = NULL", "in no cycle"),
        # a cycle recorded past its plan's end of that cycle (its credits outlive it)
        ("UPDATE accounts SET cycle_index = cycle_index - 1", "recorded to end at"),
        # a plan cancelled in its first cycle while the account is in its second
        ("UPDATE subscriptions SET canceled_at = started_at", "after its end"),
    ],
)
async def test_audit_finds_credits_alive_past_their_expiry_in_a_later_cycle(
    api: Api,
    clock: FrozenClock,
    rows: Rows,
    app: object,
    database_url: str,
    tmp_path: Path,
    corruption: str,
    finding: str,
) -> None:
    # given a history the audit passes
    await renewed_history_with_a_live_pack(api, clock)
    assert (await run_audit(app.state.services)).findings == []  # type: ignore[attr-defined]
    # when a row is corrupted so that credits outlive their cycle
    await rows.execute(corruption)
    # then the audit names it and exits non-zero
    report = await run_audit(app.state.services)  # type: ignore[attr-defined]
    assert any(finding in f for f in report.findings), report.findings
    result = audit(database_url, JWT_SECRET, tmp_path)
    assert result.returncode == 1
    assert finding in result.stdout


async def history_with_adjustments(api: Api, clock: FrozenClock) -> str:
    """A bonus outliving the renewal, partly spent, a correction, recorded into cycle 2."""
    account_id = await api.subscribed_account()
    bonus = await adjust(api, account_id, 300, key="bonus", expires_at="2026-04-01T00:00:00Z")
    assert bonus["__typename"] == "CreditsAdjusted"
    assert (await adjust(api, account_id, -50, key="fix"))["__typename"] == "CreditsAdjusted"
    clock.advance(timedelta(days=40))
    for i in range(14):  # 1000 of the new cycle, then 120 of the bonus
        await api.run(account_id, "ULTRA", key=f"r{i}")
    return account_id


@pytest.mark.parametrize(
    ("corruption", "finding"),
    [
        ("UPDATE credit_adjustments SET remaining = remaining + 1 WHERE amount > 0", "left but"),
        ("UPDATE accounts SET bonus_balance = bonus_balance + 5", "bonus balance"),
        # a bonus holding credits though its date is before the cycle its account recorded
        (
            "UPDATE credit_adjustments SET expires_at = created_at WHERE amount > 0",
            "past its expiry",
        ),
        ("UPDATE credit_adjustments SET remaining = 3 WHERE amount < 0", "a correction holds"),
    ],
)
async def test_audit_checks_bonus_lots_and_corrections(
    api: Api,
    clock: FrozenClock,
    rows: Rows,
    app: object,
    database_url: str,
    tmp_path: Path,
    corruption: str,
    finding: str,
) -> None:
    # given a history with adjustments the audit passes
    account_id = await history_with_adjustments(api, clock)
    assert (await rows.account(account_id))["bonus_balance"] == 300 - 120
    assert (await run_audit(app.state.services)).findings == []  # type: ignore[attr-defined]
    # when a row is corrupted
    await rows.execute(corruption)
    # then the audit names it and exits non-zero
    report = await run_audit(app.state.services)  # type: ignore[attr-defined]
    assert any(finding in f for f in report.findings), report.findings
    result = audit(database_url, JWT_SECRET, tmp_path)
    assert result.returncode == 1
    assert finding in result.stdout
