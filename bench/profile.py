"""One operation through the served app in process: CPU per request, and a profile of it.

The HTTP server and the load generator are left out (the app is called as ASGI), so what
this measures is the app's own CPU per request (on uvloop, as served):

    python -m bench.profile editor --requests 2000            # CPU ms per request
    python -m bench.profile run_many --profile /tmp/run.prof  # and a cProfile of it
    python -m bench.profile editor --serve --py-spy /tmp/ed.txt  # served, loaded by wrk

Instruction counts are the steadiest figure on a shared machine (the measured requests
only; divide callgrind's "Collected" by ``--requests``):

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python -m bench.profile editor --callgrind --requests 320 --warmup 160

``--serve`` runs ``creditgate serve`` as the bench does (production settings, pinned to CPU 0,
wrk on CPU 1) and reports the server's CPU per request; ``--py-spy`` records the server
process meanwhile (py-spy is a dev tool: ``pip install py-spy``), in its raw collapsed form.

It seeds a fresh PostgreSQL database (``creditgate_profile`` next to
``CREDITGATE_BENCH_POSTGRES_URL``'s) and drops it at the end. Requests go in waves of
``--concurrency`` at once, as the bench's clients keep that many in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import secrets
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url

from app.auth import issue_token
from app.main import create_app
from app.persistence.migrate import upgrade
from app.runtime import settle_heap
from app.settings import Settings
from bench import seed
from bench.run import DASHBOARD, DEFAULT_POSTGRES, EDITOR, RUN, _admin, _services

DATABASE = "creditgate_profile"
PURCHASE = """mutation Buy($key: String!) {
  purchasePack(input: {packId: "pack-500", idempotencyKey: $key}) { __typename }
}"""


def settings(url: str, secret: str, pool: int, *, sandbox: bool = False) -> Settings:
    """Production's settings; ``sandbox``: the sandbox's instant checkout instead of Stripe
    (production refuses it, so those run as ``test``), so that a purchase is granted within
    the request, as ``purchasePack`` answers ``PackPurchased`` on the sandbox."""
    money: dict[str, Any] = (
        {"env": "test", "payment_provider": "sandbox"}
        if sandbox
        else {
            "env": "production",
            "payment_provider": "stripe",
            "stripe_secret_key": "sk_test_bench",
            "stripe_webhook_secret": "whsec_bench",
        }
    )
    return Settings(
        _env_file=None,
        **money,
        database_url=url,
        jwt_secret=secret,
        pro_monthly_credits=1_000_000,
        pro_max_active_generations=0,  # no worker finishes the runs (bench/run.py)
        db_pool_size=pool,
        db_max_overflow=0,
        rate_limit_per_account="10000000/minute",
        rate_limit_per_ip="10000000/minute",
    )


async def call(app: Any, body: bytes, token: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", token.encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def instrument(callgrind: bool, state: str) -> None:
    """Callgrind counts instructions only while on: the measured requests, not the set-up."""
    if callgrind:
        import subprocess

        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], capture_output=True)


async def drive(args: argparse.Namespace, url: str, secret: str) -> None:
    services = _services(settings(url, secret, 4))
    try:
        accounts = await seed.subscribed_accounts(services, "many", args.accounts)
    finally:
        await services.db.dispose()

    def token(account: str) -> str:
        made = issue_token(
            secret, role="user", account_id=account, now=datetime.now(UTC), ttl=timedelta(hours=2)
        )
        return f"Bearer {made}"

    tokens = [token(a) for a in accounts]
    if args.serve:
        serve(args, url, secret, tokens)
        return
    query = {
        "editor": EDITOR,
        "dashboard": DASHBOARD,
        "run_many": RUN,
        "run_one": RUN,
        "purchase": PURCHASE,
    }[args.operation]
    keyed = args.operation in ("run_many", "run_one", "purchase")
    # What every answer must be (a union member): a purchase credited, a run started.
    expected = {
        "purchase": b"PackPurchased",
        "run_many": b"GeneratorRun",
        "run_one": b"GeneratorRun",
    }.get(args.operation, b"data")

    def request(number: int) -> tuple[bytes, str]:
        variables = {"key": uuid.uuid4().hex} if keyed else {}
        body = json.dumps({"query": query, "variables": variables}).encode()
        return body, tokens[0 if args.operation == "run_one" else number % len(tokens)]

    sandbox = args.operation == "purchase"
    app = create_app(settings(url, secret, args.concurrency, sandbox=sandbox))
    settle_heap()  # as a served worker does
    async with app.router.lifespan_context(app):

        async def wave(start: int, count: int) -> None:
            answers = await asyncio.gather(
                *(call(app, *request(n)) for n in range(start, start + count))
            )
            for status, body in answers:
                if status != 200 or b'"errors"' in body or expected not in body:
                    raise SystemExit(f"unexpected answer {status}: {body[:300]!r}")

        for start in range(0, args.warmup, args.concurrency):
            await wave(start, args.concurrency)
        instrument(args.callgrind, "on")
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, args.requests, args.concurrency):
            await wave(start, args.concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        instrument(args.callgrind, "off")
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
    print(
        f"{args.operation}: {args.requests} requests, "
        f"{cpu / args.requests * 1000:.3f} CPU ms/request, "
        f"{wall / args.requests * 1000:.3f} wall ms"
    )


def serve(args: argparse.Namespace, url: str, secret: str, tokens: list[str]) -> None:
    import subprocess
    import tempfile
    from pathlib import Path

    from bench.load import KEY, Call, LoadSpec, run_wrk
    from bench.servers import Server, creditgate_command, pinned

    query = {"editor": EDITOR, "dashboard": DASHBOARD, "run_many": RUN, "run_one": RUN}[
        args.operation
    ]
    keyed = args.operation.startswith("run")
    # wrk puts a key of its own in place of KEY in every request (bench/load.py).
    body = json.dumps({"query": query, "variables": {"key": KEY} if keyed else {}})
    calls = [Call(body, t) for t in (tokens[:1] if args.operation == "run_one" else tokens)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITGATE_")}
    env.update(
        CREDITGATE_ENV="production",
        CREDITGATE_DATABASE_URL=url,
        CREDITGATE_JWT_SECRET=secret,
        CREDITGATE_PRO_MONTHLY_CREDITS="1000000",
        CREDITGATE_PRO_MAX_ACTIVE_GENERATIONS="0",
        CREDITGATE_PAYMENT_PROVIDER="stripe",
        CREDITGATE_STRIPE_SECRET_KEY="sk_test_bench",
        CREDITGATE_STRIPE_WEBHOOK_SECRET="whsec_bench",
        CREDITGATE_DB_POOL_SIZE=str(args.concurrency),
        CREDITGATE_DB_MAX_OVERFLOW="0",
        CREDITGATE_RATE_LIMIT_PER_ACCOUNT="10000000/minute",
        CREDITGATE_RATE_LIMIT_PER_IP="10000000/minute",
    )
    with tempfile.TemporaryDirectory(prefix="creditgate-profile-") as tmp:
        work = Path(tmp)
        server = Server("creditgate", pinned(creditgate_command(), "0"), env, work / "server.log")
        server.start("/graphql")
        try:
            spec = LoadSpec("/graphql", calls)
            load = dict(connections=args.concurrency, workdir=work, cpus="1")
            run_wrk(server.url + "/graphql", spec, seconds=1, run_id="warm", **load)
            spy = None
            if args.py_spy:
                (pid,) = server.pids()[-1:]
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "-r",
                        "500",
                        "-f",
                        "raw",
                        "-o",
                        args.py_spy,
                        "-p",
                        str(pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            cpu = server.cpu_seconds()
            result = run_wrk(
                server.url + "/graphql", spec, seconds=args.seconds, run_id="load", **load
            )
            cpu = server.cpu_seconds() - cpu
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
        finally:
            server.stop()
    print(
        f"{args.operation} served: {result.requests} requests, {result.rps:.0f} req/s, "
        f"{cpu / max(result.requests, 1) * 1000:.3f} CPU ms/request, errors {result.errors}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "operation", choices=["editor", "dashboard", "run_many", "run_one", "purchase"]
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument(
        "--callgrind", action="store_true", help="run under valgrind --instr-atstart=no"
    )
    parser.add_argument("--serve", action="store_true", help="through creditgate serve and wrk")
    parser.add_argument("--seconds", type=float, default=5.0, help="load time when served")
    parser.add_argument("--py-spy", help="record the served process with py-spy to this file")
    parser.add_argument("--profile", help="write a cProfile of the measured requests here")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CREDITGATE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument(
        "--database",
        default=DATABASE,
        help=f"the database made and dropped for the run ({DATABASE}); two runs at once "
        "need a name each",
    )
    args = parser.parse_args(argv)
    admin = make_url(args.postgres_url)
    database = args.database
    _admin(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _admin(admin, f'CREATE DATABASE "{database}"')
    url = admin.set(database=database).render_as_string(hide_password=False)
    try:
        upgrade(url)
        import uvloop

        uvloop.run(drive(args, url, secrets.token_urlsafe(48)))
    finally:
        _admin(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
