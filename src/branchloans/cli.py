"""The `branchloans` command: serve, migrate, seed, demo-data, certs, api-keys, ..."""

import argparse
import asyncio
import math
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import PostgresDsn, ValidationError
from sqlalchemy import make_url

from branchloans import __version__
from branchloans.config import AppEnv, get_settings

if TYPE_CHECKING:  # imported where used, so `branchloans --help` starts fast
    import uvicorn

    from branchloans.db import Database

T = TypeVar("T")


def _serve(args: argparse.Namespace) -> int:
    from branchloans.observability import multiprocess
    from branchloans.observability.logs import configure_logging

    settings = get_settings()
    if args.reload and settings.app_env is AppEnv.PRODUCTION:
        print("--reload is a development tool; refused when APP_ENV=production", file=sys.stderr)
        return 2
    metrics_port = settings.metrics_port if settings.metrics_enabled else None
    if metrics_port == args.port:
        print(f"METRICS_PORT={metrics_port} is the API's own --port; pick another", file=sys.stderr)
        return 2
    configure_logging(settings)
    metrics_dir, made_here = None, False
    if settings.metrics_enabled:
        # Before uvicorn imports the app (here or in a worker), so prometheus_client starts
        # in multiprocess mode and a scrape of any worker sums them all.
        metrics_dir, made_here = multiprocess.prepare_directory()

    import uvicorn

    if args.workers > 1 and not args.reload:
        # Spawned workers inherit it, and each takes its share of the per-key limits.
        os.environ["SERVE_WORKERS"] = str(args.workers)
    options: dict[str, Any] = {
        "app": "branchloans.app:create_app",
        "factory": True,
        "host": args.host,
        "port": args.port,
        "workers": None if args.reload else args.workers,
        "reload": args.reload,
        "reload_dirs": ["src"] if args.reload else None,
        "loop": "uvloop",
        # httptools, plus the header size limit and header timeout uvicorn lacks for it; named,
        # so each worker imports it when it loads the app rather than while it unpickles.
        "http": "branchloans.edge:GuardedHttpToolsProtocol",
        "limit_concurrency": settings.http_limit_concurrency,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        # The application logs one line per request itself; uvicorn's own would double it.
        "access_log": False,
        "log_config": None,
        # The application reads X-Forwarded-For itself, from TRUSTED_PROXIES only.
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_seconds),
    }
    status = 0
    try:
        if metrics_port is None and (args.reload or args.workers == 1):
            uvicorn.run(**options)
        else:
            status = _serve_sockets(uvicorn.Config(**options), metrics_port)
    finally:
        if made_here and metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _serve_sockets(config: "uvicorn.Config", metrics_port: int | None) -> int:
    """Serve on the API's port and, when set, METRICS_PORT: the same workers accept on both
    (so the multiprocess collector sums them all, whichever answers the scrape), and the app
    tells the two apart by the local port (MetricsPortGate)."""
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    from branchloans.shutdown import ClosingMultiprocess

    sockets = [config.bind_socket()]
    if metrics_port is not None:
        # log_config=None: uvicorn's own would replace the service's log configuration.
        listener = uvicorn.Config(config.app, host=config.host, port=metrics_port, log_config=None)
        sockets.append(listener.bind_socket())
    server = uvicorn.Server(config)
    if config.should_reload:
        ChangeReload(config, target=server.run, sockets=sockets).run()
    elif config.workers > 1:
        ClosingMultiprocess(config, sockets=sockets).run()
    else:
        server.run(sockets=sockets)
        if not server.started:
            return 3  # uvicorn's own exit status when the application fails to start
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from branchloans.migrate import create_database_if_missing, grant_app_role, upgrade_to_head

    settings = get_settings()
    app_url = settings.database_url.encoded_string()
    owner_url = settings.owner_database_url
    if asyncio.run(create_database_if_missing(owner_url)):
        print(f"created database {settings.database_name}")
    upgrade_to_head(owner_url)
    print(f"database {settings.database_name} is at the newest revision")
    if asyncio.run(grant_app_role(owner_url, app_url)):
        print(f"role {make_url(app_url).username} may read and write the service's rows only")
    return 0


class _RoleRefusedError(Exception):
    """The database refused the connected role what the command asked."""


async def _with_database(work: "Callable[[Database], Awaitable[T]]", *, owner: bool = False) -> T:
    """Run `work` with the database DATABASE_URL names, then close its connections; as the
    owner (MIGRATION_DATABASE_URL) when told, for what the API's own role may not do."""
    import asyncpg

    from branchloans.db import Database

    settings = get_settings()
    if owner:
        owner_url = PostgresDsn(settings.owner_database_url)
        settings = settings.model_copy(update={"database_url": owner_url})
    database = await Database.open(settings)
    try:
        return await work(database)
    except asyncpg.InsufficientPrivilegeError as error:
        raise _RoleRefusedError(str(error)) from error
    finally:
        await database.close()


def _seed(args: argparse.Namespace) -> int:
    if get_settings().app_env is AppEnv.PRODUCTION:
        print("refusing to insert demo loans into a production database", file=sys.stderr)
        return 2
    from branchloans.loans.demo import seed_demo_loans

    inserted = asyncio.run(_with_database(seed_demo_loans))
    print(f"inserted {inserted} demo loan(s)")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from branchloans.certs import DEFAULT_NAMES, ensure_certificates

    names = tuple(dict.fromkeys([*DEFAULT_NAMES, *args.name]))
    ca_directory = Path(args.ca_dir) if args.ca_dir else None
    report = ensure_certificates(Path(args.dir), names, ca_directory=ca_directory)
    paths = report.paths
    print(f"{'created' if report.created_ca else 'kept'} CA {paths.ca_cert}")
    action = "created" if report.created_server else "kept"
    print(f"{action} server certificate {paths.server_cert} for {', '.join(names)}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from branchloans.idempotency.service import purge_expired_keys

    purged = asyncio.run(_with_database(purge_expired_keys))
    print(f"purged {purged} expired idempotency key(s)")
    return 0


def _key_name(value: str) -> str:
    from branchloans.auth.service import parse_key_name

    try:
        return parse_key_name(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _api_keys_create(args: argparse.Namespace) -> int:
    from branchloans.auth.service import ApiKeyExistsError, create_api_key, parse_scopes

    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        key = asyncio.run(
            _with_database(lambda s: create_api_key(s, args.name, scopes), owner=True)
        )
    except ApiKeyExistsError:
        print(f"an API key named {args.name!r} exists already", file=sys.stderr)
        return 1
    print(key)
    print(
        f"API key {args.name!r} with scopes {', '.join(scopes)}. It is shown only now: "
        "store it in your secret manager.",
        file=sys.stderr,
    )
    return 0


def _api_keys_list(args: argparse.Namespace) -> int:
    from branchloans.auth.service import KEY_PREFIX, list_api_keys

    for key in asyncio.run(_with_database(list_api_keys, owner=True)):
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        print(
            f"{key.name}\t{KEY_PREFIX}{key.id}_...\t{','.join(key.scopes)}\t"
            f"created {key.created_at.isoformat()}\t{state}"
        )
    return 0


def _api_keys_revoke(args: argparse.Namespace) -> int:
    from branchloans.auth.service import revoke_api_key

    if not asyncio.run(_with_database(lambda s: revoke_api_key(s, args.name), owner=True)):
        print(f"no active API key is named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked API key {args.name!r}")
    return 0


async def _load_demo_data(count: int, seed: int | None) -> None:
    import asyncpg

    from branchloans.loans.synthetic import load_synthetic_loans
    from branchloans.migrate import asyncpg_dsn

    # A connection of its own: the pool's carry the service's statement timeout, and a bulk
    # load of a million loans runs longer than any request may.
    connection = await asyncpg.connect(asyncpg_dsn(get_settings().database_url.encoded_string()))
    try:
        report = await load_synthetic_loans(connection, count, seed)
    finally:
        await connection.close()
    print(
        f"inserted {report.loans} synthetic loan(s) with {report.events} event(s)"
        f" in {report.seconds:.1f} s"
    )


def _demo_data(args: argparse.Namespace) -> int:
    if get_settings().app_env is AppEnv.PRODUCTION:
        print("refusing to insert synthetic loans into a production database", file=sys.stderr)
        return 2
    asyncio.run(_load_demo_data(args.count, args.seed))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line, one sub-command per task."""
    parser = argparse.ArgumentParser(
        prog="branchloans",
        description="Branch Loans API. Settings come from the environment (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--reload", action="store_true", help="restart when the code changes")
    serve.set_defaults(handler=_serve)

    commands.add_parser(
        "migrate", help="create the database if missing and apply every migration"
    ).set_defaults(handler=_migrate)
    commands.add_parser("seed", help="insert the five demo loans (idempotent)").set_defaults(
        handler=_seed
    )

    certs = commands.add_parser(
        "certs",
        help="create a local CA and a TLS certificate for branchloans.com, localhost and "
        "127.0.0.1 unless valid ones exist",
    )
    certs.add_argument(
        "--dir", default="certs", help="where the server's files and ca.crt go (default ./certs)"
    )
    certs.add_argument(
        "--ca-dir", help="where the CA's key and certificate stay (default: the same as --dir)"
    )
    certs.add_argument(
        "--name",
        action="append",
        default=[],
        help="another DNS name or IP address the certificate covers (repeatable)",
    )
    certs.set_defaults(handler=_certs)
    commands.add_parser(
        "purge-idempotency-keys", help="delete expired Idempotency-Key answers, in batches"
    ).set_defaults(handler=_purge)
    api_keys = commands.add_parser("api-keys", help="create, list and revoke API keys")
    key_commands = api_keys.add_subparsers(dest="api_keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument(
        "--name", required=True, type=_key_name, help="who holds the key, e.g. clerk-app"
    )
    create.add_argument(
        "--scopes",
        required=True,
        help="comma-separated: loans:read, loans:write, loans:manage",
    )
    create.set_defaults(handler=_api_keys_create)
    key_commands.add_parser("list", help="list keys (never the keys themselves)").set_defaults(
        handler=_api_keys_list
    )
    revoke = key_commands.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name", type=_key_name)
    revoke.set_defaults(handler=_api_keys_revoke)
    demo_data = commands.add_parser(
        "demo-data", help="bulk-load N realistic synthetic loans with their histories (COPY)"
    )
    demo_data.add_argument("--count", type=_positive, required=True, help="loans to add")
    demo_data.add_argument("--seed", type=int, help="random seed, for repeatable values")
    demo_data.set_defaults(handler=_demo_data)
    return parser


def _explain(error: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for problem in error.errors():
        variable = "_".join(str(part) for part in problem["loc"]).upper() or "settings"
        lines.append(f"  {variable}: {problem['msg']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `branchloans` console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ValidationError as error:  # the settings, read from the environment
        print(_explain(error), file=sys.stderr)
        return 2
    except _RoleRefusedError as error:
        print(
            f"the database refused: {error}. Keys are managed as the database's owner: "
            "set MIGRATION_DATABASE_URL to the owner's connection",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
