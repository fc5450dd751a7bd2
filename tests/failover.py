"""A pg_auto_failover formation on loopback, built and torn down by a test.

Debian's ``postgresql-15-auto-failover`` (its ``pg_autoctl``, installed by
:func:`tests.debian.ensure_installed` when missing) runs a monitor and the data nodes, each a
PostgreSQL of its own on a free loopback port, with their data under one temporary folder.
``pg_autoctl`` refuses to run as root, so as root every node runs as the ``postgres`` user.

``number_sync_standbys = 1`` needs two standbys in the replication quorum (the monitor
refuses it with one), so the formation is a primary and two secondaries: every commit is
acknowledged only once a standby has it, and the monitor promotes the most advanced one.
The monitor's health checks are tightened (README, "Failover") so a failover takes seconds
rather than the defaults' half a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.debian import ensure_installed
from tests.processes import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "creditgate"
SECONDARIES = 2
# The monitor's defaults fail over after about 20 s of silence plus 30 s waiting for the
# old primary to demote itself; these make it a few seconds (loopback, nothing is slow).
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "4000",
    "pgautofailover.primary_demote_timeout": "3000",
}
FORMATION_TIMEOUT_SECONDS = 240.0


@dataclass
class Node:
    name: str
    port: int
    pgdata: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        first = pidfile.read_text().split("\n", 1)[0].strip()
        return int(first) if first.isdigit() else None


class Formation:
    def __init__(self) -> None:
        self._autoctl = ensure_installed("pg_autoctl", "postgresql-15-auto-failover")
        self.root = Path(tempfile.mkdtemp(prefix="creditgate-failover-"))
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.monitor_port = free_port()
        self.monitor: Node | None = None
        self.nodes: list[Node] = []

    # -- processes --------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "CREDITGATE_"))}
        env.update(
            PATH=f"{PG_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            PG_CONFIG=str(PG_BIN / "pg_config"),
            # pg_autoctl keeps its state and config under XDG folders: keep them in ours.
            XDG_CONFIG_HOME=str(self.root / "config"),
            XDG_DATA_HOME=str(self.root / "share"),
            XDG_RUNTIME_DIR=str(self.root / "run"),
            HOME=str(self.root),
        )
        return env

    def _popen(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                command,
                cwd=self.root,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # One process group per node: a kill takes its keeper and PostgreSQL at once.
                start_new_session=True,
                user="postgres" if self._as_postgres else None,
                group="postgres" if self._as_postgres else None,
            )

    def _start_node(self, name: str, *args: str) -> Node:
        port = self.monitor_port if name == "monitor" else free_port()
        pgdata = self.root / name
        log = self.root / f"{name}.log"
        kind = "monitor" if name == "monitor" else "postgres"
        command = [self._autoctl, "create", kind, "--pgdata", str(pgdata)]
        command += ["--pgport", str(port), "--hostname", "127.0.0.1", "--listen", "127.0.0.1"]
        command += ["--auth", "trust", "--no-ssl", *args, "--run"]
        node = Node(name, port, pgdata, self._popen(command, log), log)
        return node

    @property
    def monitor_dsn(self) -> str:
        return f"postgresql://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover"

    # -- building ----------------------------------------------------------------------
    async def start(self) -> Formation:
        async with asyncio.timeout(FORMATION_TIMEOUT_SECONDS):
            self.monitor = self._start_node("monitor")
            await self._until_connectable(self.monitor_dsn, self.monitor)
            await self._tune_monitor()
            monitor = f"{self.monitor_dsn}?sslmode=disable"
            common = ("--monitor", monitor, "--dbname", DATABASE)
            primary = self._start_node("node1", *common, "--name", "node1")
            self.nodes.append(primary)
            await self._until_states({"node1": {"single"}})
            for i in range(SECONDARIES):
                name = f"node{i + 2}"
                self.nodes.append(self._start_node(name, *common, "--name", name))
            wanted = {"node1": {"primary"}} | {n.name: {"secondary"} for n in self.nodes[1:]}
            await self._until_states(wanted, kick=primary)
            await self._monitor_execute(
                "SELECT pgautofailover.set_formation_number_sync_standbys('default', 1)"
            )
            await self._until_states(wanted)  # the primary applies the new setting
        return self

    async def _until_connectable(self, dsn: str, node: Node) -> None:
        while True:
            if node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited:\n{self.log_tail(node)}")
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection = await asyncpg.connect(dsn, timeout=2)
                await connection.close()
                return
            await asyncio.sleep(0.2)

    async def _tune_monitor(self) -> None:
        dsn = f"postgresql://postgres@127.0.0.1:{self.monitor_port}/pg_auto_failover"
        connection = await asyncpg.connect(dsn)
        try:
            for name, value in MONITOR_SETTINGS.items():
                await connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await connection.execute("SELECT pg_reload_conf()")
        finally:
            await connection.close()

    async def _monitor_execute(self, statement: str) -> None:
        dsn = f"postgresql://postgres@127.0.0.1:{self.monitor_port}/pg_auto_failover"
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported, assigned) state, as the monitor has them."""
        connection = await asyncpg.connect(self.monitor_dsn, timeout=2)
        try:
            rows = await connection.fetch(
                "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node"
            )
        finally:
            await connection.close()
        return {r["nodename"]: (r["reportedstate"], r["goalstate"]) for r in rows}

    async def _until_states(self, wanted: dict[str, set[str]], *, kick: Node | None = None) -> None:
        """Wait until each named node reports and is assigned one of its wanted states."""
        while True:
            for node in (self.monitor, *self.nodes):
                assert node is not None
                if node.process.poll() is not None:
                    raise RuntimeError(f"{node.name} exited:\n{self.log_tail(node)}")
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                states = await self.states()
                if all(
                    name in states and set(states[name]) <= accepted
                    for name, accepted in wanted.items()
                ):
                    return
                if kick is not None:
                    # pg_autoctl's pg_basebackup waits for a spread checkpoint (minutes);
                    # a CHECKPOINT on the primary makes that one finish now.
                    await self._checkpoint(kick)
            await asyncio.sleep(0.5)

    async def _checkpoint(self, node: Node) -> None:
        connection = await asyncpg.connect(node.dsn, timeout=2)
        try:
            await connection.execute("CHECKPOINT")
        finally:
            await connection.close()

    # -- using -------------------------------------------------------------------------
    def database_url(self) -> str:
        """Every data node, for SQLAlchemy's asyncpg dialect; connections go to the primary."""
        hosts = "&".join(f"host=127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql+asyncpg://postgres@/{DATABASE}?{hosts}&target_session_attrs=read-write"

    async def primary(self) -> Node:
        states = await self.states()
        (name,) = [n for n, (reported, _) in states.items() if reported == "primary"]
        return next(node for node in self.nodes if node.name == name)

    def kill(self, node: Node) -> None:
        """SIGKILL the node's PostgreSQL and its keeper at once: the machine is gone.

        The keeper alone would restart a killed PostgreSQL in place (no failover)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        postmaster = node.postmaster_pid()
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)
        node.process.wait(timeout=10)

    async def until_promoted(self, *, other_than: Node) -> tuple[Node, float]:
        """The node the monitor promoted, once it takes writes; and when (monotonic)."""
        while True:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                states = await self.states()
                writable = [
                    n
                    for n, (reported, assigned) in states.items()
                    if n != other_than.name
                    and reported == assigned
                    and reported in {"primary", "wait_primary"}
                ]
                if writable:
                    node = next(node for node in self.nodes if node.name == writable[0])
                    return node, time.monotonic()
            await asyncio.sleep(0.1)

    def log_tail(self, node: Node, lines: int = 30) -> str:
        if not node.log.exists():
            return "(no log)"
        return "\n".join(node.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for node in (*self.nodes, self.monitor):
            if node is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            postmaster = node.postmaster_pid()
            if postmaster is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(postmaster, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_formation() -> AsyncIterator[Formation]:
    formation = Formation()
    try:
        yield await formation.start()
    finally:
        formation.stop()
