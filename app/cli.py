"""``creditgate serve | migrate | token``: the operator's entry points."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from app.auth import issue_token
from app.settings import Settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_served_app
    from app.persistence.migrate import upgrade

    upgrade(settings.database_url)
    # Worker processes import the app, so they build it from the same environment.
    app = create_served_app(settings) if args.workers == 1 else "app.main:create_served_app"
    uvicorn.run(
        app,
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host or settings.host,
        port=args.port or settings.port,
        access_log=not settings.is_production,
        log_level="info",
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from app.persistence.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"migrated {settings.database_url.split('@')[-1]} to {args.revision}")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    if (args.role == "user") != (args.account is not None):
        print("give --account ID for a user token, or --role service", file=sys.stderr)
        return 2
    token = issue_token(
        settings.jwt_secret,
        role=args.role,
        account_id=args.account,
        now=datetime.now(UTC),
        ttl=timedelta(hours=args.hours),
    )
    print(token)
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

    token = commands.add_parser("token", help="print a signed token")
    token.add_argument("--account", help="account id, for a user token")
    token.add_argument("--role", choices=["user", "service"], default="user")
    token.add_argument("--hours", type=float, default=24.0, help="lifetime (default 24)")
    token.set_defaults(run=_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    return int(args.run(settings, args))


if __name__ == "__main__":
    sys.exit(main())
