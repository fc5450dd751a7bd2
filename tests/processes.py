"""Real ``creditgate serve`` processes for tests: start, wait until ready, kill or stop.

Each :class:`GatewayProcess` binds 127.0.0.1 only, logs to a file of its own (so a full pipe
never stalls it) and is stopped by whoever started it, normally through :class:`Gateways`
in a fixture's teardown. The integration tests and the live tests (tests/live) share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import httpx

from app.clock import FrozenClock
from tests.api_client import Api

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
EXIT_TIMEOUT_SECONDS = 30.0
CLIENT_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; a tiny race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Set for every process unless its ``env`` says otherwise.
TEST_DEFAULTS: Mapping[str, str] = {
    # The sweeper would write on its own schedule; tests that need it turn it on.
    "CREDITGATE_SWEEP_INTERVAL_SECONDS": "0",
    # These tests fire hundreds of mutations at one account on purpose.
    "CREDITGATE_RATE_LIMITS_ENABLED": "false",
    # ... and queue far more runs than a plan may have at once.
    "CREDITGATE_STARTER_MAX_ACTIVE_GENERATIONS": "0",
    "CREDITGATE_PRO_MAX_ACTIVE_GENERATIONS": "0",
}
# Pass in ``env`` to undo TEST_DEFAULTS: the app's own defaults apply (the sweeper runs,
# rate limits are on), as in production.
APP_DEFAULTS: Mapping[str, str | None] = dict.fromkeys(TEST_DEFAULTS)
# Production refuses the sandbox: Stripe test keys, pointed at nothing unless a test says.
PRODUCTION_PAYMENTS_ENV: Mapping[str, str] = {
    "CREDITGATE_PAYMENT_PROVIDER": "stripe",
    "CREDITGATE_STRIPE_SECRET_KEY": "sk_test_creditgate",
    "CREDITGATE_STRIPE_WEBHOOK_SECRET": "whsec_creditgate_test",
    "CREDITGATE_STRIPE_API_BASE": "http://127.0.0.1:9",
}


def _environment(
    database_url: str, jwt_secret: str, extra: Mapping[str, str | None]
) -> dict[str, str]:
    """The server's environment; a ``None`` in ``extra`` unsets that variable."""
    # The parent's CREDITGATE_* settings (a developer's shell) must not leak into the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITGATE_")}
    env.update(
        CREDITGATE_ENV="test",
        CREDITGATE_DATABASE_URL=database_url,
        CREDITGATE_JWT_SECRET=jwt_secret,
        **TEST_DEFAULTS,
    )
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    if env.get("CREDITGATE_ENV") == "production":
        for key, value in PRODUCTION_PAYMENTS_ENV.items():
            env.setdefault(key, value)
    return env


class GatewayProcess:
    """One ``creditgate serve`` process on 127.0.0.1:``port``.

    ``env`` adds to (or, with ``None``, removes from) the test settings; ``args`` go after
    ``serve --host --port`` (``--workers 3``, say)."""

    def __init__(
        self,
        database_url: str,
        jwt_secret: str,
        workdir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        name: str = "gateway",
    ) -> None:
        self.port = port or free_port()
        self.name = name
        self.log_path = workdir / f"{name}.log"
        # The working directory holds no .env, so only the settings given here apply.
        self._workdir = workdir
        self._env = _environment(database_url, jwt_secret, env or {})
        self._args = tuple(args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, for ws:// and http:// URLs alike."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> GatewayProcess:
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running")
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), *self._args]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self._workdir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def wait_ready(self) -> None:
        """Poll /readyz until it answers 200; fail early if the process exits."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await self._poll_until_ready()
        except TimeoutError:
            raise TimeoutError(
                f"{self.name} not ready in {READY_TIMEOUT_SECONDS}s:\n{self.log_tail()}"
            ) from None

    async def _poll_until_ready(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not self.is_running():
                    raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"{self.base_url}/readyz")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.05)

    def pause(self) -> None:
        """SIGSTOP: the process stops mid-request; what it already sent still arrives."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if not self.is_running():
            raise RuntimeError(f"{self.name} is not running")
        assert self._process is not None
        self._process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing; what a crash or the OOM killer does."""
        if self._send(signal.SIGKILL):
            self._wait_or_kill()

    def terminate(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully) and return at once; :meth:`wait` for it."""
        if self._send(signal.SIGTERM):
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)  # a paused process handles it once resumed

    def wait(self, timeout: float = EXIT_TIMEOUT_SECONDS) -> int:
        """The exit code (``-N`` for signal N) once the process has exited."""
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process.wait(timeout)

    def stop(self) -> None:
        """:meth:`terminate`, then SIGKILL if it takes too long; a no-op once it has exited."""
        if self.is_running():
            self.terminate()
            self._wait_or_kill()

    def _send(self, sig: signal.Signals) -> bool:
        """Send ``sig`` if the process runs; whether it did."""
        if not self.is_running():
            return False
        assert self._process is not None
        self._process.send_signal(sig)
        return True

    def _wait_or_kill(self) -> None:
        assert self._process is not None
        try:
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def errors(self) -> list[str]:
        """Log lines that report an error: a failed sweep logs one though no client sees it.

        Strawberry logs every top-level GraphQL error with its traceback, expected ones (a
        bad token) included: check this where no request should fail."""
        lines = self.log().splitlines()
        return [line for line in lines if "Traceback" in line or "ERROR" in line]

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log().splitlines()[-lines:])


class Gateways:
    """Starts gateway processes for one test and stops every one of them at the end.

    ``events_database_url``: the direct URL every process LISTENs on, when ``database_url``
    goes through PgBouncer."""

    def __init__(
        self,
        database_url: str,
        jwt_secret: str,
        workdir: Path,
        *,
        events_database_url: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.events_database_url = events_database_url
        self.jwt_secret = jwt_secret
        self.workdir = workdir
        self.started: list[GatewayProcess] = []

    async def start(
        self,
        *,
        port: int | None = None,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
    ) -> GatewayProcess:
        if self.events_database_url:
            env = {"CREDITGATE_EVENTS_DATABASE_URL": self.events_database_url, **(env or {})}
        gateway = GatewayProcess(
            self.database_url,
            self.jwt_secret,
            self.workdir,
            port=port,
            env=env,
            args=args,
            name=f"gateway-{len(self.started) + 1}",
        )
        self.started.append(gateway)
        gateway.start()
        await gateway.wait_ready()
        return gateway

    def errors(self) -> dict[str, list[str]]:
        """Error lines per process that logged any."""
        return {g.name: found for g in self.started if (found := g.errors())}

    def stop_all(self) -> None:
        for gateway in self.started:
            gateway.stop()

    def __enter__(self) -> Gateways:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def audit(database_url: str, jwt_secret: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """``creditgate audit`` as an operator runs it: a process of its own, exit 0 or 1."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "audit"],
        cwd=workdir,
        env=_environment(database_url, jwt_secret, {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.asynccontextmanager
async def connected(gateway: GatewayProcess, jwt_secret: str) -> AsyncIterator[Api]:
    """An :class:`Api` over real HTTP to ``gateway``, sized for a few hundred requests at once."""
    async with httpx.AsyncClient(
        base_url=gateway.base_url,
        timeout=httpx.Timeout(CLIENT_TIMEOUT_SECONDS),
        # Idle connections are dropped well before uvicorn closes them (5 s): reusing one the
        # server is closing fails with ReadError, which a busy machine made happen.
        limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=None, keepalive_expiry=2.0
        ),
    ) as client:
        # Tokens are checked against the servers' system clock: sign them with the time now.
        yield Api(client, jwt_secret, FrozenClock(datetime.now(UTC)))
