"""The `branchloans` command: serve, migrate, seed."""

import argparse
import asyncio
import shutil
import sys
from collections.abc import Callable, Sequence

from branchloans.config import AppEnv, get_settings


def _serve(args: argparse.Namespace) -> int:
    from branchloans.observability import multiprocess
    from branchloans.observability.logs import configure_logging

    settings = get_settings()
    configure_logging(settings)
    metrics_dir, made_here = None, False
    if settings.metrics_enabled:
        # Before uvicorn imports the app (here or in a worker), so prometheus_client starts
        # in multiprocess mode and a scrape of any worker sums them all.
        metrics_dir, made_here = multiprocess.prepare_directory()

    import uvicorn

    try:
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
            # The application reads X-Forwarded-For itself, from TRUSTED_PROXIES only.
            proxy_headers=False,
            server_header=False,
        )
    finally:
        if made_here and metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `branchloans` console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
