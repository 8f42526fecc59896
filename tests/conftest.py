"""Shared fixtures: one migrated throwaway database per run, one app, and a
transaction per test that is rolled back when the test ends."""

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from branchloans.app import create_app
from branchloans.config import Settings
from branchloans.migrate import create_database_if_missing, drop_database, upgrade_to_head
from branchloans.state import app_state
from tests.support import (
    EMPTY_TABLES,
    SERVER_URL,
    DatabaseInTransaction,
    client_in_transaction,
    in_transaction,
    make_settings,
    serving,
    throwaway_database_url,
)


@contextmanager
def throwaway_database(purpose: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database (migrated to head with Alembic unless told not to), dropped after."""
    url = throwaway_database_url(purpose)
    asyncio.run(create_database_if_missing(url))
    try:
        if migrated:
            upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The run's database, where each test works inside a transaction rolled back after it."""
    with throwaway_database("run") as url:
        yield url


@pytest.fixture
def migrated_database_url() -> Iterator[str]:
    """A database of the test's own, migrated to head, for data that must really commit."""
    with throwaway_database("committed") as url:
        yield url


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database that exists but was never migrated."""
    with throwaway_database("empty", migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """Settings aimed at the run's database."""
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The tests' own SQLAlchemy engine on the run's database, to arrange and inspect rows."""
    test_engine = create_async_engine(database_url)
    yield test_engine
    await test_engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """One application for the run, started the way uvicorn starts it."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def committed_database_url() -> Iterator[str]:
    """A second migrated database, shared by the run's tests whose requests must commit."""
    with throwaway_database("shared") as url:
        yield url


@pytest.fixture(scope="session")
async def committed_app(committed_database_url: str) -> AsyncIterator[FastAPI]:
    """An app on the second database, with a real session (and connection) per request."""
    application = create_app(make_settings(committed_database_url))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def committed_engine(committed_database_url: str) -> AsyncIterator[AsyncEngine]:
    """The tests' own SQLAlchemy engine on the second database."""
    test_engine = create_async_engine(committed_database_url)
    yield test_engine
    await test_engine.dispose()


@pytest.fixture
async def committed_client(committed_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests commit, each on its own connection; the tables are emptied after."""
    transport = httpx.ASGITransport(app=committed_app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        async with app_state(committed_app).database.connection() as conn:
            await conn.execute(EMPTY_TABLES)


@pytest.fixture
async def committed_session(committed_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session on the second database, to read what committed requests wrote."""
    async with AsyncSession(committed_engine, expire_on_commit=False) as reader:
        yield reader


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back after the test."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement; send it now, so
        # that statements sent on the driver's own connection are inside the transaction too.
        await conn.exec_driver_sql("SELECT 1")
        try:
            yield conn
        finally:
            await transaction.rollback()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session in the test's transaction; its commits become savepoints."""
    async with AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    ) as test_session:
        yield test_session


@pytest.fixture
async def database(app: FastAPI, connection: AsyncConnection) -> DatabaseInTransaction:
    """The app's database handle, working inside the test's transaction."""
    return in_transaction(app, connection)


@pytest.fixture
async def client(app: FastAPI, connection: AsyncConnection) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the app (authentication off, as in development) in the test's transaction."""
    async with client_in_transaction(app, connection) as http:
        yield http


@pytest.fixture(scope="session")
async def secured_app(database_url: str) -> AsyncIterator[FastAPI]:
    """The app with API keys required and no key cache, so revocation shows at once."""
    application = create_app(
        make_settings(database_url, auth_required=True, api_key_cache_seconds=0)
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def secured_client(
    secured_app: FastAPI, connection: AsyncConnection
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the app that demands API keys, in the test's transaction."""
    async with client_in_transaction(secured_app, connection) as http:
        yield http


UNREACHABLE_DATABASES = {
    "nothing listening": make_url(SERVER_URL).set(host="127.0.0.1", port=1),
    "no such database": make_url(throwaway_database_url("never_created")),
}


@pytest.fixture(params=sorted(UNREACHABLE_DATABASES))
async def client_without_database(
    request: pytest.FixtureRequest,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app whose database cannot be reached (each way it can fail)."""
    url = UNREACHABLE_DATABASES[request.param].render_as_string(hide_password=False)
    async with serving(make_settings(url)) as http:
        yield http


@pytest.fixture
async def client_with_empty_database(
    empty_database_url: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app whose database exists but was never migrated."""
    async with serving(make_settings(empty_database_url)) as http:
        yield http


def _untracked_files() -> set[str] | None:
    """Files git neither tracks nor ignores in the work tree; None outside a git checkout."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return set(listing.stdout.splitlines())


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note what was untracked before the run, to tell what the run left behind."""
    session.stash[_UNTRACKED_AT_START] = _untracked_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when it left files in the work tree (metrics files, reports, caches)."""
    before = session.stash.get(_UNTRACKED_AT_START, None)
    after = _untracked_files()
    if before is None or after is None:
        return
    left = sorted(after - before)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"the test run left untracked files in the work tree: {left[:20]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_UNTRACKED_AT_START = pytest.StashKey[set[str] | None]()
