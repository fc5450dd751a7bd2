"""``creditgate webhooks deliver`` sends what is due once, from a process of its own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from app.settings import Settings
from tests.api_client import Api
from tests.conftest import JWT_SECRET
from tests.processes import _environment
from tests.webhooks.conftest import create_endpoint
from tests.webhooks.receiver import Receiver


async def test_the_deliver_command_runs_one_pass(
    api: Api, settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    # given events committed while no worker ran
    await create_endpoint(api, receiver, ["CREDITS_RENEWED"])
    await api.subscribed_account()
    await api.subscribed_account()
    # when the command runs
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "webhooks", "deliver"],
        cwd=tmp_path,
        env=_environment(settings.database_url, JWT_SECRET, {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # then both were delivered, verified, and it says so
    assert "2 delivered, 0 to retry, 0 failed" in done.stdout, done.stdout + done.stderr
    assert len(receiver.events()) == 2 and all(r.verified for r in receiver.requests)
