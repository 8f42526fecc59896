"""Helpers the tests share that are not fixtures."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import asyncpg
import httpx
from fastapi import FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from branchloans.app import create_app
from branchloans.auth.models import Scope
from branchloans.auth.service import create_api_key
from branchloans.config import Settings
from branchloans.db import Database, init_connection
from branchloans.migrate import (
    asyncpg_dsn,
    create_database_if_missing,
    drop_database,
    upgrade_to_head,
)
from branchloans.state import app_state, get_database

SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def throwaway_database_url(purpose: str) -> str:
    """A URL on the test server for a database nobody else uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"branchloans_test_{purpose}_{worker}_{uuid.uuid4().hex[:8]}"
    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


def with_password(database_url: str, password: str = "k3Jq9vXz2Lw8pR4t") -> str:
    """`database_url` with a password production accepts (the local server trusts any)."""
    return make_url(database_url).set(password=password).render_as_string(hide_password=False)


TEST_CURSOR_KEY = "test-cursor-signing-key-0123456789abcdef"  # pragma: allowlist secret


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test, ignoring any `.env` file in the working directory.

    Scrape-time database figures are read afresh on every scrape, and startup does not wait
    for the database (so an app aimed at an unreachable one starts), unless a test says
    otherwise.
    """
    overrides.setdefault("metrics_cache_seconds", 0)
    overrides.setdefault("db_startup_timeout", 0)
    # A key production accepts, so a test of production settings fails only for its own reason.
    overrides.setdefault("cursor_signing_keys", TEST_CURSOR_KEY)
    return Settings(_env_file=None, database_url=database_url, **overrides)  # type: ignore[call-arg]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of one series, or None when it is absent."""
    return samples.get((name, frozenset(labels.items())))


def json_lines(output: str) -> list[dict[str, Any]]:
    """Each line of captured output parsed as JSON; a line that is not JSON fails the test."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


_INITIALISED: "weakref.WeakSet[asyncpg.Connection]" = weakref.WeakSet()


@dataclass(frozen=True)
class DatabaseInTransaction(Database):
    """The app's database, with every statement and transaction inside a test's transaction.

    Each `connection()` block is a savepoint, so a statement that fails undoes itself alone,
    as it does on a connection of its own outside a transaction; a transaction is a savepoint
    within it.
    """

    test_connection: AsyncConnection = field(kw_only=True)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The test connection's asyncpg connection, in a savepoint."""
        raw = await self.test_connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        assert driver.is_in_transaction(), "the test transaction has not begun"
        if driver not in _INITIALISED:  # as the pool does for each connection it opens
            await init_connection(driver)
            _INITIALISED.add(driver)
        async with driver.transaction():
            yield driver


def in_transaction(app: FastAPI, connection: AsyncConnection) -> DatabaseInTransaction:
    """The started `app`'s database, working inside the transaction of `connection`."""
    return DatabaseInTransaction(**vars(app_state(app).database), test_connection=connection)


@asynccontextmanager
async def client_in_transaction(
    app: FastAPI, connection: AsyncConnection, **transport_options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for `app` whose every request works inside the transaction of `connection`."""

    async def database_in_test_transaction(request: Request) -> Database:
        return in_transaction(request.app, connection)

    app.dependency_overrides[get_database] = database_in_test_transaction
    transport = httpx.ASGITransport(app=app, **transport_options)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        app.dependency_overrides.pop(get_database, None)


@asynccontextmanager
async def started_client(
    app: FastAPI, connection: AsyncConnection, **transport_options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """Start `app` (its lifespan) and give a client in the test's transaction."""
    async with (
        app.router.lifespan_context(app),
        client_in_transaction(app, connection, **transport_options) as http,
    ):
        yield http


@asynccontextmanager
async def serving(
    settings: Settings,
    *,
    install: Callable[[FastAPI], Awaitable[None]] | None = None,
    **transport_options: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A started app built from `settings` (plus any routes `install` adds) and a client for
    it, with no test transaction."""
    application = create_app(settings)
    if install is not None:
        await install(application)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, **transport_options)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@dataclass
class LiveServer:
    """A `branchloans serve` process on a loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    log: IO[bytes]

    def output(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait for the exit (SIGKILL after `timeout` seconds); the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def wait_until_live(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll /liveness until it answers; fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it answered")
        try:
            if httpx.get(f"{url}/liveness", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {url} did not answer within {timeout} s")


@contextmanager
def live_server(env: dict[str, str], *, workers: int = 1) -> Iterator[LiveServer]:
    """Run `branchloans serve` with `env` added to this environment, stopped at the end."""
    port = free_port()
    # A file, not a pipe: a pipe nobody reads fills up and blocks the server's logging; the
    # metrics files in a directory of the test's own, never in the work tree.
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as metrics:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "branchloans.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env={
                **os.environ,
                "IDEMPOTENCY_PURGE_INTERVAL": "0",
                "PROMETHEUS_MULTIPROC_DIR": metrics,
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = LiveServer(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_until_live(server.url, process)
            yield server
        finally:
            server.stop()


async def create_key(database_url: str, *scopes: Scope) -> str:
    """An API key with `scopes` (every scope when none is named), stored at `database_url`."""
    database = await Database.open(make_settings(database_url))
    try:
        name = f"test-{uuid.uuid4().hex[:8]}"
        return await create_api_key(database, name, scopes or tuple(Scope))
    finally:
        await database.close()


# loan_events refuses UPDATE, DELETE and TRUNCATE, the owner's too (revision 0009). Tests that
# delete loans or empty the tables set its triggers aside for one transaction, as a migration
# that must rewrite history would.
HISTORY_ASIDE = "ALTER TABLE loan_events DISABLE TRIGGER USER"
EMPTY_TABLES = (
    f"BEGIN; {HISTORY_ASIDE}; TRUNCATE loans, idempotency_keys, api_keys CASCADE;"
    " ALTER TABLE loan_events ENABLE TRIGGER USER; COMMIT"
)


async def terminate_app_connections(database_url: str) -> int:
    """Have Postgres kill the API's connections to this database; how many it killed."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        killed: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'branchloans'"
            " AND pid <> pg_backend_pid()"
        )
        return killed
    finally:
        await connection.close()


@contextmanager
def database_of_its_own(purpose: str) -> Iterator[str]:
    """A new database migrated to head, dropped after: for a live server whose writes commit
    and must not show up in the run's shared databases."""
    url = throwaway_database_url(purpose)
    asyncio.run(create_database_if_missing(url))
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(drop_database(url))


class RowLock:
    """Holds a loan's row lock from another connection, so an action on it stays in flight."""

    def __init__(self, database_url: str, loan_id: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._connection = self._loop.run_until_complete(asyncpg.connect(asyncpg_dsn(database_url)))
        self._loop.run_until_complete(self._connection.execute("BEGIN"))
        self._loop.run_until_complete(
            self._connection.execute("SELECT 1 FROM loans WHERE id = $1 FOR UPDATE", loan_id)
        )

    def release(self) -> None:
        self._loop.run_until_complete(self._connection.execute("COMMIT"))
        self._loop.run_until_complete(self._connection.close())
        self._loop.close()
