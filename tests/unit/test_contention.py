"""Which runs go without the account's lock: none while another run of the account is in
flight in the process, none for a while after an unlocked write found the account moved."""

from __future__ import annotations

from app.persistence.contention import MOVED_LIMIT, Contention


class Ticking:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_run_of_an_account_with_none_in_flight_goes_unlocked() -> None:
    contention = Contention()
    assert contention.enter("a") is True
    contention.leave("a")
    assert contention.enter("a") is True
    assert contention.in_flight("a") == 1


def test_a_run_while_another_of_the_account_is_in_flight_takes_the_lock() -> None:
    contention = Contention()
    assert contention.enter("a") is True
    assert contention.enter("a") is False
    assert contention.enter("b") is True  # other accounts are not held back
    contention.leave("a")
    contention.leave("a")
    assert contention.in_flight("a") == 0
    assert contention.enter("a") is True


def test_an_account_found_moved_takes_the_lock_until_the_cooldown_has_passed() -> None:
    clock = Ticking()
    contention = Contention(cooldown=1.0, monotonic=clock)
    contention.moved("a")
    assert contention.enter("a") is False
    contention.leave("a")
    clock.now += 0.999
    assert contention.enter("a") is False
    contention.leave("a")
    clock.now += 0.002
    assert contention.enter("a") is True


def test_the_moved_accounts_remembered_stay_bounded() -> None:
    clock = Ticking()
    contention = Contention(monotonic=clock)
    for i in range(MOVED_LIMIT + 1):
        contention.moved(f"account-{i}")
    # the oldest half is forgotten, the newest still takes the lock
    assert contention.enter("account-0") is True
    assert contention.enter(f"account-{MOVED_LIMIT}") is False
