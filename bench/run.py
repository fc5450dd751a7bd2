"""``make bench``: creditgate against a bare reference app, same machine, same run.

    python -m bench.run [--duration 5] [--rounds 12] [--sqlite-rounds 2] [--backends postgres]

For each backend: a fresh database, seeded accounts, `creditgate serve` (one worker) and
bench/reference.py on the same settings; each operation loaded with wrk at concurrency 16,
the two targets alternating in rounds. Then the scaling checks. Prints a table and writes
it as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from app.auth import issue_token
from app.clock import SystemClock
from app.domain.model import Plan
from app.domain.plans import PlanCatalog
from app.persistence.engine import create_engine
from app.persistence.migrate import upgrade
from app.persistence.unit_of_work import Database
from app.services.deps import Services
from app.settings import Settings
from bench import seed
from bench.load import KEY, Call, LoadResult, LoadSpec, have_wrk, run_python, run_wrk
from bench.queries import statement_counts
from bench.servers import (
    ROOT,
    Server,
    bare_command,
    creditgate_command,
    pinned,
    reference_command,
)

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BENCH_DATABASE = "creditgate_bench"
TARGETS = ("creditgate", "reference", "bare")  # ratios: the first over each other
STRICT = "bare"  # the strict reference: only the essential SQL (bench/bare.py)
RESULTS = ROOT / "bench" / "results"
ACCOUNTS = 200
HISTORY_PAIRS = 49_999  # + its grant and one run: 100,000 ledger entries

EDITOR = "query Editor { me { creditsTotal } }"
DASHBOARD = """query Dashboard { me { subscriptionBalance packBalance packExpiresAt nextRenewalAt
  subscription { plan interval status monthlyCredits startedAt canceledAt endsAt } } }"""
RUN = """mutation Run($key: String!) {
  runGenerator(input: {tool: BACKGROUND_REMOVAL, idempotencyKey: $key}) {
    __typename
    ... on GeneratorRun { generation { id status cost } account { creditsTotal } }
    ... on Error { message }
  }
}"""
OPERATIONS = {
    "editor": "editor read: me { creditsTotal }",
    "dashboard": "dashboard read: balances and subscription",
    "run_many": "runGenerator, many accounts",
    "run_one": "runGenerator, one account (lock contention)",
}
# Targets that must hold on PostgreSQL with one worker: against the same-work reference,
# and against the bare endpoint doing only the essential SQL.
MIN_RPS_RATIO = {"editor": 0.70, "dashboard": 0.70, "run_many": 0.70}
MIN_STRICT_RPS_RATIO = {"editor": 0.75, "dashboard": 0.70, "run_many": 0.50}
MAX_RUN_ROUND_TRIPS = 5
MAX_P99_RATIO = 2.0
MAX_RSS_MB = 200.0
MAX_HISTORY_DRIFT = 0.10


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(48)
        self.use_wrk = have_wrk() and not args.python_client
        # The server under test on CPU 0, wrk on CPU 1: on a shared 2-core machine the
        # scheduler otherwise moves the server, wrk and PostgreSQL around, and one round's
        # ratio swung from 0.45 to 1.28. Both targets get the same core; PostgreSQL floats.
        pin = self.use_wrk and not args.no_pin and (os.cpu_count() or 1) >= 2
        pin = pin and shutil.which("taskset") is not None
        self.server_cpus: str | None = "0" if pin else None
        self.load_cpus: str | None = "1" if pin else None

    # -- setup ------------------------------------------------------------------------------

    def settings(self, database_url: str) -> Settings:
        return Settings(
            _env_file=None,
            env="production",
            database_url=database_url,
            jwt_secret=self.secret,
            pro_monthly_credits=1_000_000,
            pro_max_active_generations=0,
            # Production refuses the sandbox; the bench buys no packs, so Stripe is never called.
            payment_provider="stripe",
            stripe_secret_key="sk_test_bench",
            stripe_webhook_secret="whsec_bench",
            db_pool_size=self.args.connections,
            db_max_overflow=0,
        )

    def server_env(self, database_url: str) -> dict[str, str]:
        # Production settings: no access log, no IDE, as it would be deployed.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITGATE_")}
        env.update(
            CREDITGATE_ENV="production",
            CREDITGATE_DATABASE_URL=database_url,
            CREDITGATE_JWT_SECRET=self.secret,
            CREDITGATE_PRO_MONTHLY_CREDITS="1000000",
            # No cap on runs at once: no worker finishes the bench's runs, so with the cap
            # every account's sixth run on would be refused, a different (cheaper) request.
            CREDITGATE_PRO_MAX_ACTIVE_GENERATIONS="0",
            CREDITGATE_PAYMENT_PROVIDER="stripe",
            CREDITGATE_STRIPE_SECRET_KEY="sk_test_bench",
            CREDITGATE_STRIPE_WEBHOOK_SECRET="whsec_bench",
            CREDITGATE_DB_POOL_SIZE=str(self.args.connections),
            CREDITGATE_DB_MAX_OVERFLOW="0",
            # Rate limits stay on, so their cost is measured, but high enough that the load
            # (thousands of mutations a minute on one account) is never refused.
            CREDITGATE_RATE_LIMIT_PER_ACCOUNT="10000000/minute",
            CREDITGATE_RATE_LIMIT_PER_IP="10000000/minute",
            PYTHONPATH=str(ROOT),
        )
        return env

    def token(self, account_id: str | None) -> str:
        return issue_token(
            self.secret,
            role="user" if account_id else "service",
            account_id=account_id,
            now=datetime.now(UTC),
            ttl=timedelta(hours=2),
        )

    def fresh_database(self, backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.workdir / 'bench.sqlite3'}"
        admin = make_url(self.args.postgres_url)
        _admin(admin, f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        _admin(admin, f'CREATE DATABASE "{BENCH_DATABASE}"')
        return admin.set(database=BENCH_DATABASE).render_as_string(hide_password=False)

    def drop_database(self, backend: str) -> None:
        if backend == "postgres":
            admin = make_url(self.args.postgres_url)
            _admin(admin, f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')

    def seed(self, backend: str, database_url: str) -> dict[str, Any]:
        upgrade(database_url)

        async def go() -> dict[str, Any]:
            services = _services(self.settings(database_url))
            try:
                accounts = await seed.subscribed_accounts(services, "many", ACCOUNTS)
                hot, small, big = await seed.subscribed_accounts(services, "one", 3)
                await seed.runs(services, small, 9, "history")
                if backend == "postgres":
                    await seed.bulk_history(services, big, HISTORY_PAIRS)
                    await seed.runs(services, big, 1, "history")
                counts = await seed.ledger_counts(services, [small, big])
            finally:
                await services.db.dispose()
            return {"accounts": accounts, "hot": hot, "small": small, "big": big, "ledger": counts}

        return asyncio.run(go())

    # -- what each target is sent -----------------------------------------------------------

    def specs(self, fixture: dict[str, Any]) -> dict[str, dict[str, LoadSpec]]:
        accounts, hot = fixture["accounts"], fixture["hot"]
        tokens = {a: f"Bearer {self.token(a)}" for a in [*accounts, hot]}

        def gql(query: str, ids: list[str], keyed: bool = False) -> LoadSpec:
            variables = {"key": KEY} if keyed else {}
            body = json.dumps({"query": query, "variables": variables})
            return LoadSpec("/graphql", [Call(body, tokens[a]) for a in ids])

        def ref(path: str, ids: list[str], keyed: bool = False) -> LoadSpec:
            extra = {"tool": "BACKGROUND_REMOVAL", "key": KEY} if keyed else {}
            return LoadSpec(path, [Call(json.dumps({"accountId": a, **extra})) for a in ids])

        return {
            "editor": {
                "creditgate": gql(EDITOR, accounts),
                "reference": ref("/read/editor", accounts),
                "bare": ref("/read/editor", accounts),
            },
            "dashboard": {
                "creditgate": gql(DASHBOARD, accounts),
                "reference": ref("/read/dashboard", accounts),
                "bare": ref("/read/dashboard", accounts),
            },
            "run_many": {
                "creditgate": gql(RUN, accounts, keyed=True),
                "reference": ref("/run", accounts, keyed=True),
                "bare": ref("/run", accounts, keyed=True),
            },
            "run_one": {
                "creditgate": gql(RUN, [hot], keyed=True),
                "reference": ref("/run", [hot], keyed=True),
                "bare": ref("/run", [hot], keyed=True),
            },
        }

    # -- measuring --------------------------------------------------------------------------

    def load(self, server: Server, spec: LoadSpec, seconds: float, tag: str) -> dict[str, Any]:
        run_id = f"{tag}-{time.time_ns()}"
        cpu_before = server.cpu_seconds()
        if self.use_wrk:
            result: LoadResult = run_wrk(
                server.url,
                spec,
                seconds=seconds,
                connections=self.args.connections,
                run_id=run_id,
                workdir=self.workdir,
                cpus=self.load_cpus,
            )
        else:
            result = run_python(
                server.url, spec, seconds=seconds, connections=self.args.connections, run_id=run_id
            )
        cpu = server.cpu_seconds() - cpu_before
        return {
            "rps": result.rps,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "requests": result.requests,
            "errors": result.errors,
            "cpu_ms_per_request": 1000 * cpu / result.requests if result.requests else None,
        }

    def alternate(
        self, servers: dict[str, Server], specs: dict[str, LoadSpec], tag: str
    ) -> dict[str, Any]:
        """Rounds of A then B, B then A, ...; medians per target, ratio of first to second."""
        return _summary(self.run_rounds(servers, specs, tag, self.args.rounds))

    def paired_rounds(
        self,
        start_pair: Callable[[int], AbstractContextManager[dict[str, Server]]],
        specs: dict[str, dict[str, LoadSpec]],
        tag: str,
        count: int,
        after_pair: Callable[[int, bool, dict[str, Server]], None] | None = None,
    ) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``count`` rounds of each operation in ``specs`` (operation -> target -> load),
        shared over ``--pairs`` fresh pairs of servers from ``start_pair(number)``: the same
        code in two processes measured up to 10% apart (hash seeds, memory layout), so a
        ratio taken on one pair is partly that pair's luck. ``after_pair(number, last,
        servers)`` runs while a pair is still up."""
        rounds: dict[str, dict[str, list[dict[str, Any]]]] = {op: {} for op in specs}
        shares = _shares(count, self.args.pairs)
        for pair, share in enumerate(shares):
            with start_pair(pair) as servers:
                for op, targets in specs.items():
                    got = self.run_rounds(
                        servers, targets, f"{tag}-{op}-pair{pair}", share, sum(shares[:pair])
                    )
                    for name, measured in got.items():
                        rounds[op].setdefault(name, []).extend(measured)
                if after_pair is not None:
                    after_pair(pair, pair == len(shares) - 1, servers)
        return rounds

    def run_rounds(
        self,
        servers: dict[str, Server],
        specs: dict[str, LoadSpec],
        tag: str,
        count: int,
        first: int = 0,
    ) -> dict[str, list[dict[str, Any]]]:
        """A warm-up of each target, then ``count`` rounds numbered from ``first``: A then B
        in even rounds, B then A in odd ones."""
        names = list(servers)
        for name in names:  # warm-up: connections, caches, JIT-free but page-cache-full
            self.load(servers[name], specs[name], 1, f"{tag}-warm-{name}")
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for number in range(first, first + count):
            order = names if number % 2 == 0 else names[::-1]
            for name in order:
                rounds[name].append(
                    self.load(servers[name], specs[name], self.args.duration, f"{tag}-{number}")
                )
        return rounds

    # -- one backend ------------------------------------------------------------------------

    def backend(self, backend: str) -> dict[str, Any]:
        database_url = self.fresh_database(backend)
        report: dict[str, Any] = {"database": database_url.split("@")[-1]}
        try:
            started = time.monotonic()
            fixture = self.seed(backend, database_url)
            report["seed_seconds"] = round(time.monotonic() - started, 1)
            env = self.server_env(database_url)
            specs = self.specs(fixture)
            settings = self.settings(database_url)
            report["sql"] = asyncio.run(
                statement_counts(
                    settings, self.token(None), fixture["accounts"], self.probe_calls(fixture)
                )
            )
            peak: dict[str, float] = {}

            def after_pair(pair: int, last: bool, servers: dict[str, Server]) -> None:
                if pair == 0:
                    report["server_modules"] = {n: s.loaded_modules() for n, s in servers.items()}
                for name, server in servers.items():
                    peak[name] = max(peak.get(name, 0.0), server.peak_rss_mb())
                if last and backend == "postgres" and not self.args.no_scaling:
                    report["history"] = self.history(servers["creditgate"], fixture)

            rounds = self.paired_rounds(
                lambda pair: self.servers(backend, env, pair),
                {op: {name: specs[op][name] for name in TARGETS} for op in OPERATIONS},
                backend,
                self.rounds(backend),
                after_pair,
            )
            report["pairs"] = len(_shares(self.rounds(backend), self.args.pairs))
            report["operations"] = {}
            for operation in OPERATIONS:
                report["operations"][operation] = _summary(rounds[operation])
                _progress(backend, operation, report["operations"][operation])
            report["peak_rss_mb"] = peak
            if "history" in report:
                _progress(backend, "history", report["history"])
            if backend == "postgres" and not self.args.no_scaling:
                report["workers"] = self.workers(env, specs["editor"]["creditgate"])
                _progress(backend, "workers", report["workers"])
            report["consistency"] = asyncio.run(_consistency(settings))
        finally:
            if not self.args.keep:
                self.drop_database(backend)
        return report

    @contextmanager
    def servers(self, backend: str, env: dict[str, str], pair: int) -> Iterator[dict[str, Server]]:
        with ExitStack() as stack:
            servers = {
                "creditgate": Server(
                    "creditgate",
                    pinned(creditgate_command(), self.server_cpus),
                    env,
                    self.workdir / f"{backend}-cg-{pair}.log",
                ),
                "reference": Server(
                    "reference",
                    pinned(reference_command(), self.server_cpus),
                    env,
                    self.workdir / f"{backend}-ref-{pair}.log",
                ),
                "bare": Server(
                    "bare",
                    pinned(bare_command(), self.server_cpus),
                    env,
                    self.workdir / f"{backend}-bare-{pair}.log",
                ),
            }
            for server in servers.values():
                stack.callback(server.stop)
                server.start("/graphql" if server.name == "creditgate" else "/read/editor")
            yield servers

    def rounds(self, backend: str) -> int:
        """PostgreSQL, where the targets are judged, gets the most rounds: on a shared
        machine one round's ratio swings by up to 0.3, and the median of more rounds less."""
        return self.args.sqlite_rounds if backend == "sqlite" else self.args.rounds

    def probe_calls(self, fixture: dict[str, Any]) -> dict[str, Any]:
        """One request per operation and target, for the SQL comparison."""
        account, hot = fixture["accounts"][0], fixture["hot"]
        auth = {a: f"Bearer {self.token(a)}" for a in (account, hot)}
        probe = f"probe-{time.time_ns()}"

        def run(who: str, n: int) -> dict[str, Any]:
            return {
                "creditgate": (
                    "/graphql",
                    {"query": RUN, "variables": {"key": f"{probe}-{n}"}},
                    auth[who],
                ),
                "reference": (
                    "/run",
                    {"accountId": who, "tool": "BACKGROUND_REMOVAL", "key": f"{probe}-{n + 1}"},
                    None,
                ),
            }

        return {
            "editor": {
                "creditgate": ("/graphql", {"query": EDITOR}, auth[account]),
                "reference": ("/read/editor", {"accountId": account}, None),
            },
            "dashboard": {
                "creditgate": ("/graphql", {"query": DASHBOARD}, auth[account]),
                "reference": ("/read/dashboard", {"accountId": account}, None),
            },
            "run_many": run(account, 0),
            "run_one": run(hot, 2),
        }

    def history(self, server: Server, fixture: dict[str, Any]) -> dict[str, Any]:
        """The editor read on an account with 10 ledger entries against one with 100,000."""
        small, big = fixture["small"], fixture["big"]
        spec = {
            who: LoadSpec(
                "/graphql",
                [Call(json.dumps({"query": EDITOR, "variables": {}}), f"Bearer {self.token(a)}")],
            )
            for who, a in (("big", big), ("small", small))
        }
        summary = self.alternate({"big": server, "small": server}, spec, "history")
        summary["ledger_entries"] = {
            "big": fixture["ledger"][big],
            "small": fixture["ledger"][small],
        }
        return summary

    def workers(self, env: dict[str, str], spec: LoadSpec) -> dict[str, Any]:
        """The editor read on `creditgate serve --workers 2` against one worker."""
        with ExitStack() as stack:
            servers = {
                "two_workers": Server(
                    "two_workers", creditgate_command(2), env, self.workdir / "workers2.log"
                ),
                "one_worker": Server(
                    "one_worker", creditgate_command(1), env, self.workdir / "workers1.log"
                ),
            }
            for server in servers.values():
                stack.callback(server.stop)
                server.start("/graphql")
            summary = self.alternate(servers, {n: spec for n in servers}, "workers")
            summary["peak_rss_mb"] = {n: s.peak_rss_mb() for n, s in servers.items()}
            return summary


# -- helpers ------------------------------------------------------------------------------


def _services(settings: Settings) -> Services:
    plans = PlanCatalog(
        {Plan.STARTER: settings.starter_monthly_credits, Plan.PRO: settings.pro_monthly_credits}
    )
    return Services(db=Database(create_engine(settings)), clock=SystemClock(), plans=plans)


async def _consistency(settings: Settings) -> dict[str, int]:
    services = _services(settings)
    try:
        return await seed.consistency(services)
    finally:
        await services.db.dispose()


def _admin(url: Any, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
        )
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def _shares(rounds: int, pairs: int) -> list[int]:
    """``rounds`` shared out as evenly as possible over at most ``pairs`` pairs, each pair
    getting at least one round: 10 over 3 is [4, 3, 3]."""
    pairs = max(1, min(pairs, rounds))
    return [rounds // pairs + (1 if i < rounds % pairs else 0) for i in range(pairs)]


def _summary(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per target, and the median of the per-round ratios of the first to the second."""
    names = list(rounds)
    summary: dict[str, Any] = {name: _median(rounds[name]) for name in names}
    # A round's two loads ran back to back, under the same background load: ratios are
    # taken per round, then their median, which the machine's swings disturb least.
    summary["ratio"] = _ratios(rounds[names[0]], rounds[names[1]])
    if STRICT in names[2:]:
        summary["strict"] = _ratios(rounds[names[0]], rounds[STRICT])
    summary["rounds"] = rounds
    return summary


def _ratios(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = list(zip(first, second, strict=True))
    per_round = {
        "rps": [a["rps"] / b["rps"] for a, b in pairs],
        "p50": [a["p50_ms"] / b["p50_ms"] for a, b in pairs],
        "p99": [a["p99_ms"] / b["p99_ms"] for a, b in pairs],
    }
    ratio: dict[str, Any] = {key: statistics.median(values) for key, values in per_round.items()}
    ratio["rps_per_round"] = per_round["rps"]
    return ratio


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in rounds)
    cpu = [r["cpu_ms_per_request"] * r["requests"] for r in rounds if r["cpu_ms_per_request"]]
    return {
        "rps": statistics.median(r["rps"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "cpu_ms_per_request": sum(cpu) / requests if requests else None,
        "requests": requests,
        "errors": sum(r["errors"] for r in rounds),
    }


def _progress(backend: str, what: str, summary: dict[str, Any]) -> None:
    for label, key in (("ratio", "ratio"), ("bare ", "strict")):
        if key not in summary:
            continue
        ratio = summary[key]
        print(
            f"  {backend:8} {what:10} {label} req/s {ratio['rps']:.2f}x  p99 {ratio['p99']:.2f}x"
            f"  rounds {' '.join(f'{r:.2f}' for r in ratio['rps_per_round'])}",
            flush=True,
        )


# -- report -------------------------------------------------------------------------------


def checks(report: dict[str, Any]) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []
    for backend, data in report["backends"].items():
        operations = data["operations"]
        if backend == "postgres":
            for operation, minimum in MIN_RPS_RATIO.items():
                ratio = operations[operation]["ratio"]["rps"]
                results.append(
                    (
                        f"postgres {operation} req/s >= {minimum}x reference",
                        ratio >= minimum,
                        f"{ratio:.2f}x",
                    )
                )
            for operation in OPERATIONS:
                ratio = operations[operation]["ratio"]["p99"]
                results.append(
                    (
                        f"postgres {operation} p99 <= {MAX_P99_RATIO}x reference",
                        ratio <= MAX_P99_RATIO,
                        f"{ratio:.2f}x",
                    )
                )
            for operation, minimum in MIN_STRICT_RPS_RATIO.items():
                ratio = operations[operation]["strict"]["rps"]
                results.append(
                    (
                        f"postgres {operation} req/s >= {minimum}x bare endpoint",
                        ratio >= minimum,
                        f"{ratio:.2f}x",
                    )
                )
            for operation in OPERATIONS:
                ratio = operations[operation]["strict"]["p99"]
                results.append(
                    (
                        f"postgres {operation} p99 <= {MAX_P99_RATIO}x bare endpoint",
                        ratio <= MAX_P99_RATIO,
                        f"{ratio:.2f}x",
                    )
                )
            # The second probe run: the first in a process also reads the tariffs once.
            trips = data["sql"]["round_trips"]["run_one"]
            results.append(
                (
                    f"postgres round trips per runGenerator <= {MAX_RUN_ROUND_TRIPS}",
                    trips <= MAX_RUN_ROUND_TRIPS,
                    str(trips),
                )
            )
            rss = data["peak_rss_mb"]["creditgate"]
            results.append(
                (f"postgres peak RSS < {MAX_RSS_MB:.0f} MB", rss < MAX_RSS_MB, f"{rss:.0f} MB")
            )
            if "history" in data:
                drift = abs(data["history"]["ratio"]["p50"] - 1)
                results.append(
                    (
                        "editor read p50, 100k vs 10 ledger entries, within 10%",
                        drift < MAX_HISTORY_DRIFT,
                        f"{data['history']['ratio']['p50']:.3f}x",
                    )
                )
        sql = data["sql"]
        results.append(
            (
                f"{backend} accounts(ids:) statements constant for 1/10/100 ids",
                sql["accounts_ids_constant"],
                "/".join(str(sql["accounts_ids"][k]) for k in ("1", "10", "100")),
            )
        )
        same = all(op["same_sql"] for op in sql["operations"].values())
        results.append((f"{backend} reference sends the same SQL as creditgate", same, ""))
        errors = sum(op[t]["errors"] for op in operations.values() for t in TARGETS)
        results.append((f"{backend} no HTTP errors under load", errors == 0, str(errors)))
        bad = data["consistency"]["accounts_with_balance_not_ledger_sum"]
        results.append((f"{backend} balances equal ledger sums after load", bad == 0, str(bad)))
    return results


def _pinning(report: dict[str, Any]) -> str:
    pins = report.get("pinned") or {}
    if not pins.get("servers"):
        return "servers and wrk on any core"
    return (
        f"servers on CPU {pins['servers']}, wrk on CPU {pins['wrk']} "
        "(2 workers vs 1: servers on any core)"
    )


def table(report: dict[str, Any]) -> str:
    lines = [
        f"creditgate vs reference and bare endpoint -- {report['cores']} cores, "
        f"commit {report['commit']}, "
        f"{report['load_generator']}, concurrency {report['concurrency']}, "
        f"{report['rounds']} rounds x {report['duration_s']:g}s "
        f"({report.get('sqlite_rounds', report['rounds'])} on SQLite) over "
        f"{report.get('pairs', 1)} pairs of server processes; medians, ratios per round",
        _pinning(report),
        "",
        f"{'backend':9}{'operation':46}{'target':12}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/req':>12}{'peak RSS MB':>13}",
    ]
    for backend, data in report["backends"].items():
        for operation, label in OPERATIONS.items():
            summary = data["operations"][operation]
            for target in TARGETS:
                row = summary[target]
                lines.append(
                    f"{backend:9}{label:46}{target:12}{row['rps']:8.0f}{row['p50_ms']:9.1f}"
                    f"{row['p99_ms']:9.1f}{row['cpu_ms_per_request']:12.2f}"
                    f"{data['peak_rss_mb'][target]:13.0f}"
                )
            for label, key in (("ratio ref", "ratio"), ("ratio bare", "strict")):
                ratio = summary[key]
                lines.append(
                    f"{'':9}{'':46}{label:12}{ratio['rps']:7.2f}x{ratio['p50']:8.2f}x"
                    f"{ratio['p99']:8.2f}x"
                )
        lines.append("")
    lines.append("scaling")
    for backend, data in report["backends"].items():
        sql = data["sql"]
        counts = ", ".join(f"{k} ids: {v}" for k, v in sql["accounts_ids"].items())
        lines.append(f"  {backend}: SQL statements for accounts(ids:) -- {counts}")
        per_op = ", ".join(
            f"{op} {v['creditgate']}/{v['reference']}" for op, v in sql["operations"].items()
        )
        lines.append(f"  {backend}: statements per request, creditgate/reference -- {per_op}")
        trips = ", ".join(
            f"{op} {n}" for op, n in sql["round_trips"].items() if op.startswith("run")
        )
        lines.append(
            f"  {backend}: round trips per runGenerator on creditgate (statements, BEGIN, "
            f"COMMIT) -- {trips}"
        )
        if "history" in data:
            h = data["history"]
            lines.append(
                f"  {backend}: editor read, {h['ledger_entries']['big']} vs "
                f"{h['ledger_entries']['small']} ledger entries -- p50 {h['big']['p50_ms']:.2f} vs "
                f"{h['small']['p50_ms']:.2f} ms ({h['ratio']['p50']:.3f}x), req/s "
                f"{h['big']['rps']:.0f} vs {h['small']['rps']:.0f} ({h['ratio']['rps']:.3f}x)"
            )
        if "workers" in data:
            w = data["workers"]
            lines.append(
                f"  {backend}: editor read, 2 workers vs 1 -- {w['two_workers']['rps']:.0f} vs "
                f"{w['one_worker']['rps']:.0f} req/s ({w['ratio']['rps']:.2f}x; wrk and "
                f"PostgreSQL share the same {report['cores']} cores)"
            )
        c = data["consistency"]
        lines.append(
            f"  {backend}: after load {c['accounts']} accounts, {c['ledger_entries']} ledger "
            f"entries, {c['generations']} generations, "
            f"{c['accounts_with_balance_not_ledger_sum']} balances off their ledger"
        )
    lines.append("")
    lines.append("targets")
    for name, ok, value in report["checks"]:
        lines.append(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + value if value else ''}")
    return "\n".join(lines)


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per load (2)")
    parser.add_argument(
        "--rounds", type=int, default=10, help="A/B rounds per operation on PostgreSQL (10)"
    )
    parser.add_argument(
        "--sqlite-rounds", type=int, default=4, help="A/B rounds per operation on SQLite (4)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=2,
        help="fresh pairs of server processes the rounds are shared over (2)",
    )
    parser.add_argument("--connections", type=int, default=16, help="concurrency (16)")
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CREDITGATE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="where to create the bench database (CREDITGATE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip history and workers")
    parser.add_argument("--python-client", action="store_true", help="the fallback, not wrk")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL bench database")
    parser.add_argument("--no-pin", action="store_true", help="let servers and wrk run on any core")
    args = parser.parse_args(argv)
    # A terminated bench still stops its servers and drops its database (finally, ExitStack).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="creditgate-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        report: dict[str, Any] = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": _commit(),
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_generator": "wrk" if bench.use_wrk else "python asyncio client",
            "concurrency": args.connections,
            "rounds": args.rounds,
            "sqlite_rounds": args.sqlite_rounds,
            "pairs": args.pairs,
            "duration_s": args.duration,
            "pinned": {"servers": bench.server_cpus, "wrk": bench.load_cpus},
            "backends": {},
        }
        print(f"bench: {report['load_generator']}, {report['cores']} cores", flush=True)
        for backend in args.backends.split(","):
            report["backends"][backend] = bench.backend(backend)
    report["checks"] = checks(report)
    report["elapsed_s"] = round(time.monotonic() - started)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    # The table with its ratios to both references, kept beside the JSON (markdown, tracked).
    rendered = table(report)
    (RESULTS / f"bench-{stamp}.md").write_text(f"# make bench, {stamp}\n\n```\n{rendered}\n```\n")
    print()
    print(rendered)
    print(f"\nwrote {path.relative_to(ROOT)} in {report['elapsed_s']}s")
    return 0 if all(ok for _, ok, _ in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
