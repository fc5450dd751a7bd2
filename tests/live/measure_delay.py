"""Measure the delay from COMMIT to a subscriber's message, across processes.

    python -m tests.live.measure_delay postgresql+asyncpg://postgres@127.0.0.1:5432/DB 300

The database must be migrated. A `creditgate serve` process holds the subscription; this
process commits balance changes through the unit of work (as every service does) and times
each COMMIT, so each delay lies between "after COMMIT returned" and "from COMMIT sent".
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.domain.model import Bucket, LedgerKind
from app.events.hub import Hub
from app.events.postgres import PostgresEventBus
from app.persistence.engine import create_engine
from app.persistence.unit_of_work import Database
from app.services.wallets import Postings, lock_account
from app.settings import Settings
from tests.conftest import JWT_SECRET
from tests.live.test_processes import CREDITS_CHANGED, _token, gateway
from tests.processes import APP_DEFAULTS, Gateways
from tests.servers import ws_session


async def measure(database_url: str, runs: int) -> dict[str, list[float]]:
    env = {
        "CREDITGATE_ENV": "production",
        "CREDITGATE_LOG_LEVEL": "warning",
        **APP_DEFAULTS,
        # No worker claims these runs: the plan's cap on runs at once would refuse them.
        "CREDITGATE_STARTER_MAX_ACTIVE_GENERATIONS": "0",
    }
    settings = Settings(_env_file=None, database_url=database_url, jwt_secret=JWT_SECRET)
    db = Database(create_engine(settings), events=PostgresEventBus(Hub(), database_url))
    delays: dict[str, list[float]] = {"after COMMIT returned": [], "from COMMIT sent": []}
    with (
        tempfile.TemporaryDirectory() as directory,
        Gateways(database_url, JWT_SECRET, Path(directory)) as gateways,
    ):
        server = await gateways.start(env=env)
        async with gateway(server.address) as http:
            account_id = await http.subscribed_account()
        async with ws_session(server.address, _token(account_id)) as session:
            stream = session.subscribe(CREDITS_CHANGED)
            await stream.next()
            for i in range(runs):
                received = asyncio.create_task(_timed(stream.next()))
                async with db.writing() as uow:
                    account = await lock_account(uow, account_id)
                    postings = Postings(uow, account, datetime.now(UTC))
                    postings.post(
                        LedgerKind.GRANT,
                        Bucket.SUBSCRIPTION,
                        1,
                        reference_type="TEST",
                        reference_id=None,
                    )
                    sent = time.perf_counter()
                    await uow.commit()
                    returned = time.perf_counter()
                message, at = await received
                assert message["creditsChanged"]["creditsTotal"] == 1001 + i
                delays["after COMMIT returned"].append((at - returned) * 1000)
                delays["from COMMIT sent"].append((at - sent) * 1000)
    await db.dispose()
    return delays


async def _timed(next_message: Any) -> tuple[dict[str, Any], float]:
    message = await next_message
    return message, time.perf_counter()


def main() -> None:
    database_url, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100
    for name, ms in asyncio.run(measure(database_url, runs)).items():
        ms.sort()
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        sys.stdout.write(
            f"{name:>22}: median {statistics.median(ms):6.2f} ms  p95 {p95:6.2f} ms  "
            f"max {ms[-1]:6.2f} ms  (n={len(ms)})\n"
        )


if __name__ == "__main__":
    main()
