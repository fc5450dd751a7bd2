"""The operator's entry points: serve, migrate, audit, sweep, payments, token, trusted-documents."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.auth import issue_token
from app.settings import Settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from app.main import create_served_app
    from app.observability.logging import configure_logging
    from app.persistence.migrate import upgrade

    configure_logging(settings)
    if args.workers > 1 and settings.is_sqlite:
        print("SQLite is served by one process: live events stay in it.", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    # One process: the app built here. Several: each worker builds its own from the same
    # environment (settings read once there). On SIGTERM uvicorn stops accepting, lets
    # requests finish, and closes websockets with 1012.
    if args.workers == 1:
        _run_uvicorn(create_served_app(settings), settings, args)
        return 0
    # Each worker counts into the multiprocess folder and /metrics adds them all up. The
    # workers are spawned, so they import prometheus-client after this is set.
    with worker_metrics_directory(settings.metrics_dir) as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        _run_uvicorn("app.main:create_served_app", settings, args)
    return 0


@contextlib.contextmanager
def worker_metrics_directory(configured: Path | None) -> Iterator[Path]:
    """The configured folder emptied of a previous run's files, or a temporary one."""
    if configured is None:
        with tempfile.TemporaryDirectory(prefix="creditgate-metrics-") as directory:
            yield Path(directory)
        return
    configured.mkdir(parents=True, exist_ok=True)
    # Counters left by an earlier serve would be added to this one's.
    for stale in configured.glob("*.db"):
        stale.unlink()
    yield configured


def _run_uvicorn(app: object, settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.security.slow_clients import head_timeout_protocol

    uvicorn.run(
        app,  # type: ignore[arg-type]
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        ws_max_size=settings.max_body_bytes,
        # Slow clients (docs/security.md): idle keep-alive connections close, a request
        # head must arrive in time; the app bounds the body (408).
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        http=head_timeout_protocol(settings.header_read_timeout_seconds),  # type: ignore[arg-type]
    )


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from app.persistence.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"migrated {settings.database_url.split('@')[-1]} to {args.revision}")
    return 0


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from app.main import build_services
    from app.services.audit import run_audit

    async def audit() -> int:
        services = build_services(settings)
        try:
            report = await run_audit(services)
        finally:
            await services.db.dispose()
        print(report.summary())
        for finding in report.findings[: args.limit]:
            print(f"  - {finding}")
        if len(report.findings) > args.limit:
            print(f"  ... and {len(report.findings) - args.limit} more")
        return 0 if report.ok else 1

    return asyncio.run(audit())


def _sweep(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from app.main import build_services
    from app.services.maintenance import sweep

    async def run() -> int:
        services = build_services(settings)
        try:
            report = await sweep(services)
        finally:
            await services.db.dispose()
        print(
            f"renewed {report.renewed_accounts} accounts, "
            f"released {report.released_generations} timed-out generations"
        )
        return 0

    return asyncio.run(run())


def _payments(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from app.main import build_services
    from app.services.payment_events import reconcile
    from app.services.store_purchases import reconcile_stores

    async def run() -> int:
        services = build_services(settings)
        try:
            changed = await reconcile(services)
            stored = await reconcile_stores(services)
        finally:
            await services.db.dispose()
        print(f"reconciled: {changed} purchases changed status")
        print(f"stores: {stored} purchases finished or reversed")
        return 0

    return asyncio.run(run())


def _webhooks(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from app.main import build_services, delivery_worker

    async def run() -> int:
        services = build_services(settings)
        try:
            outcomes = await delivery_worker(settings, services, None).one_pass()
        finally:
            await services.webhook_sender.aclose()
            await services.db.dispose()
        print(
            f"webhooks: {outcomes['delivered']} delivered, {outcomes['retrying']} to retry, "
            f"{outcomes['failed']} failed"
        )
        return 0

    return asyncio.run(run())


def _token(settings: Settings, args: argparse.Namespace) -> int:
    if (args.role == "user") != (args.account is not None):
        print("give --account ID for a user token, or --role service", file=sys.stderr)
        return 2
    if args.subject is not None and args.role != "service":
        print("--subject names a service token's caller (--role service)", file=sys.stderr)
        return 2
    token = issue_token(
        settings.jwt_secret,
        role=args.role,
        account_id=args.account,
        now=datetime.now(UTC),
        ttl=timedelta(hours=args.hours),
        subject=args.subject,
    )
    print(token)
    return 0


def _trusted_documents(settings: Settings, args: argparse.Namespace) -> int:
    from graphql import GraphQLError

    from graphql_schema.engine.trusted_documents import build_manifest
    from graphql_schema.schema import create_schema

    try:
        manifest = build_manifest(args.folder, create_schema()._schema)
    except (ValueError, GraphQLError, OSError) as exc:
        print(f"creditgate trusted-documents: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(manifest, indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {len(manifest['operations'])} operations to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="creditgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="apply migrations, then serve /graphql")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply Alembic migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(run=_migrate)

    audit = commands.add_parser(
        "audit", help="reconcile balances, packs, holds and ledger; exit 1 on any mismatch"
    )
    audit.add_argument("--limit", type=int, default=50, help="findings to print (default 50)")
    audit.set_defaults(run=_audit)

    sweep = commands.add_parser(
        "sweep", help="record due renewals and release timed-out generations now"
    )
    sweep.set_defaults(run=_sweep)

    payments = commands.add_parser("payments", help="payment provider operations")
    payment_commands = payments.add_subparsers(dest="payments_command", required=True)
    reconcile = payment_commands.add_parser(
        "reconcile",
        help="ask the provider about purchases pending over 10 minutes and pending refunds",
    )
    reconcile.set_defaults(run=_payments)

    webhooks = commands.add_parser("webhooks", help="outgoing webhooks")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    deliver = webhook_commands.add_parser(
        "deliver", help="send every outgoing webhook delivery due now, once, and wait"
    )
    deliver.set_defaults(run=_webhooks)

    token = commands.add_parser("token", help="print a signed token")
    token.add_argument("--account", help="account id, for a user token")
    token.add_argument("--role", choices=["user", "service"], default="user")
    token.add_argument("--hours", type=float, default=24.0, help="lifetime (default 24)")
    token.add_argument(
        "--subject", help="a service token's subject, e.g. support:ada (default: service)"
    )
    token.set_defaults(run=_token)

    documents = commands.add_parser(
        "trusted-documents",
        help="build a persisted-query manifest from a folder of .graphql operations",
    )
    documents.add_argument("folder", type=Path, help="one named operation per .graphql file")
    documents.add_argument("-o", "--output", type=Path, help="manifest file (default stdout)")
    documents.set_defaults(run=_trusted_documents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    return int(args.run(settings, args))


if __name__ == "__main__":
    sys.exit(main())
