"""The `branchloans` command: serve, migrate, seed, certs."""

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from branchloans.config import AppEnv, get_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "branchloans.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=None if args.reload else args.workers,
        reload=args.reload,
        reload_dirs=["src"] if args.reload else None,
        loop="uvloop",
        http="httptools",
        # The application logs one line per request itself; uvicorn's own would double it.
        access_log=False,
        log_config=None,
        server_header=False,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from branchloans.migrate import create_database_if_missing, upgrade_to_head

    settings = get_settings()
    database_url = settings.database_url.encoded_string()
    if asyncio.run(create_database_if_missing(database_url)):
        print(f"created database {settings.database_name}")
    upgrade_to_head(database_url)
    print(f"database {settings.database_name} is at the newest revision")
    return 0


async def _seed_demo_loans() -> int:
    from branchloans.db import Database
    from branchloans.loans.demo import seed_demo_loans

    database = Database.from_settings(get_settings())
    try:
        async with database.sessionmaker() as session:
            return await seed_demo_loans(session)
    finally:
        await database.engine.dispose()


def _seed(args: argparse.Namespace) -> int:
    if get_settings().app_env is AppEnv.PRODUCTION:
        print("refusing to insert demo loans into a production database", file=sys.stderr)
        return 2
    inserted = asyncio.run(_seed_demo_loans())
    print(f"inserted {inserted} demo loan(s)")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from branchloans.certs import DEFAULT_NAMES, ensure_certificates

    names = tuple(dict.fromkeys([*DEFAULT_NAMES, *args.name]))
    report = ensure_certificates(Path(args.dir), names)
    paths = report.paths
    print(f"{'created' if report.created_ca else 'kept'} CA {paths.ca_cert}")
    action = "created" if report.created_server else "kept"
    print(f"{action} server certificate {paths.server_cert} for {', '.join(names)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line, one sub-command per task."""
    parser = argparse.ArgumentParser(
        prog="branchloans",
        description="Branch Loans API. Settings come from the environment (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--reload", action="store_true", help="restart when the code changes")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser(
        "migrate", help="create the database if missing and apply every migration"
    )
    migrate.set_defaults(handler=_migrate)

    seed = commands.add_parser("seed", help="insert the five demo loans (idempotent)")
    seed.set_defaults(handler=_seed)

    certs = commands.add_parser(
        "certs",
        help="create a local CA and a TLS certificate for branchloans.com, localhost and "
        "127.0.0.1 unless valid ones exist",
    )
    certs.add_argument("--dir", default="certs", help="where the files go (default ./certs)")
    certs.add_argument(
        "--name",
        action="append",
        default=[],
        help="another DNS name or IP address the certificate covers (repeatable)",
    )
    certs.set_defaults(handler=_certs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `branchloans` console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
