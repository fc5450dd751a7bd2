"""A real PgBouncer in transaction pooling mode in front of the test PostgreSQL.

Debian's ``pgbouncer`` (installed by :func:`tests.debian.ensure_installed` when missing)
listens on a free loopback port and pools server connections per transaction: a client
gets a server connection for one transaction only, so nothing a session keeps (prepared
statements, ``SET``, advisory locks, LISTEN) survives between two transactions. The
settings written here are the ones README ("PgBouncer") says were tested.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.debian import ensure_installed
from tests.processes import free_port

START_TIMEOUT_SECONDS = 15.0
# Server connections per (database, user) pair: the suite's PostgreSQL is shared and allows
# 100 connections, and every request here waits on one account's row lock anyway.
DEFAULT_POOL_SIZE = 10
# Client connections: two gateways with pools of 16, the test's own engines, and room.
MAX_CLIENT_CONN = 400
# The asyncpg options a pool behind transaction pooling needs (README, "PgBouncer").
POOLED_QUERY = {"prepared_statement_cache_size": "0"}


def config_text(port: int, upstream_host: str, upstream_port: int, workdir: Path) -> str:
    return f"""\
[databases]
* = host={upstream_host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "users.txt"}
pool_mode = transaction
default_pool_size = {DEFAULT_POOL_SIZE}
max_client_conn = {MAX_CLIENT_CONN}
server_reset_query =
ignore_startup_parameters = extra_float_digits
admin_users = postgres
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
"""


class PgBouncer:
    """One ``pgbouncer`` process; :meth:`url_for` routes a direct PostgreSQL URL through it."""

    def __init__(self, upstream_url: str) -> None:
        upstream = make_url(upstream_url)
        self.port = free_port()
        self._binary = ensure_installed("pgbouncer", "pgbouncer")
        self._upstream = (upstream.host or "127.0.0.1", upstream.port or 5432)
        self._user = upstream.username or "postgres"
        self.workdir = Path(tempfile.mkdtemp(prefix="creditgate-pgbouncer-"))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        config = self.workdir / "pgbouncer.ini"
        config.write_text(config_text(self.port, *self._upstream, self.workdir))
        (self.workdir / "users.txt").write_text(f'"{self._user}" ""\n')
        command = [self._binary]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root: it switches to the postgres user, which must
            # be able to write its log and pid file here.
            postgres = pwd.getpwnam("postgres")
            for path in (self.workdir, *self.workdir.iterdir()):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)
            command += ["-u", "postgres"]
        command.append(str(config))
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"pgbouncer not listening in {START_TIMEOUT_SECONDS}s:\n{self.log()}")

    def url_for(self, direct_url: str) -> str:
        """``direct_url``'s database and user, through this PgBouncer, pooled per transaction."""
        url = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        return url.update_query_dict(POOLED_QUERY).render_as_string(hide_password=False)

    def transactions(self, database: str) -> int:
        """Transactions PgBouncer has pooled for ``database`` so far (``SHOW STATS``)."""
        # The admin console speaks the simple query protocol only: psql, not asyncpg.
        console = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        result = subprocess.run(
            [*console, "-d", "pgbouncer", "-At", "-F", "\t", "-c", "SHOW STATS"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        for line in result.stdout.splitlines():
            fields = line.split("\t")
            if fields[0] == database:
                return int(fields[1])  # total_xact_count
        return 0

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def running_pgbouncer(upstream_url: str) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(upstream_url).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
