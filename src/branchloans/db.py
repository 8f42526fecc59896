"""Database engine, session factory, the FastAPI session dependency and driver statements."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import ClauseElement, MetaData, event, exc
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_

from branchloans.config import Settings

# Deterministic constraint names keep Alembic migrations stable and reviewable.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table the service owns."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Errors after which a connection may be mid-protocol or gone: it is closed, not reused.
_CONNECTION_LOST = (
    OSError,
    TimeoutError,
    asyncio.CancelledError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the backend was terminated, or shuts down
    # Postgres ended the connection while it sat in the pool and asyncpg has read the
    # goodbye but not yet the close: the next statement finds the protocol in a bad state.
    asyncpg.InternalClientError,
)
# A connection is pinged before use once it has sat this long in the pool. A busy one is
# checked only for a close it has seen; if Postgres ended it in the instant before use,
# the statement is refused before it is sent, and sent again on another connection.
IDLE_PING_SECONDS = 5.0
_CHECKED_IN_AT = "branchloans_checked_in_at"


def _never_sent(error: BaseException) -> bool:
    # asyncpg refuses to start a statement on a connection whose protocol is in a bad
    # state, before writing anything to it: sending it again elsewhere cannot repeat it.
    return isinstance(error, asyncpg.InternalClientError) and str(error).startswith(
        "cannot switch to state"
    )


def _checkout_check(timeout: float) -> Callable[[Any, ConnectionPoolEntry, Any], None]:
    """A pool listener replacing connections Postgres closed while they sat in the pool.

    A connection asyncpg saw closed is replaced at once; one idle for `IDLE_PING_SECONDS` is
    pinged first, in one round trip bounded by `timeout` (SQLAlchemy's own pre-ping takes
    three with asyncpg: BEGIN, the ping, ROLLBACK). Raising DisconnectionError makes the
    pool open a new connection and retry.
    """

    def check(dbapi_connection: Any, connection_record: ConnectionPoolEntry, proxy: Any) -> None:
        driver: asyncpg.Connection = dbapi_connection.driver_connection
        if driver.is_closed():
            raise exc.DisconnectionError("the server closed the connection")
        checked_in_at = connection_record.info.get(_CHECKED_IN_AT)
        if checked_in_at is not None and time.monotonic() - checked_in_at < IDLE_PING_SECONDS:
            return
        try:
            await_(driver.execute("SELECT 1", timeout=timeout))
        except Exception as error:
            # Closed at once: a polite close would wait on a stalled network path.
            driver.terminate()
            raise exc.DisconnectionError(f"the connection failed its check: {error!r}") from error

    return check


def _note_checkin(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    connection_record.info[_CHECKED_IN_AT] = time.monotonic()


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine whose pool and timeouts come from the settings."""
    statement_timeout_ms = int(settings.db_statement_timeout * 1000)
    engine = create_async_engine(
        settings.database_url.encoded_string(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # `_checkout_check` checks connections instead, at less cost.
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_connect_timeout,
            # Client side, so a query on a connection the network stalled still ends; the
            # server's statement_timeout below ends first while the server can be reached.
            "command_timeout": settings.db_statement_timeout + 1,
            "server_settings": {
                "application_name": "branchloans",
                "statement_timeout": str(statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(statement_timeout_ms * 3),
                # Statements are prepared once per connection. A generic plan, made for any
                # value, reads a filtered page through the list-order index and filters it,
                # scanning far for a rare currency or status; planned for the values at
                # hand, the page reads the filter's own index, however deep or rare.
                "plan_cache_mode": "force_custom_plan",
            },
        },
    )
    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", _checkout_check(settings.db_connect_timeout))
    event.listen(pool, "checkin", _note_checkin)
    return engine


class StatementRunner(Protocol):
    """Where a `DriverStatement` runs: `Database` (a pooled connection) or `InSession`."""

    async def fetch(self, statement: "DriverStatement", **values: Any) -> list[asyncpg.Record]:
        """Every row the statement returns."""
        ...

    async def fetchrow(self, statement: "DriverStatement", **values: Any) -> asyncpg.Record | None:
        """The first row the statement returns, None when there is none."""
        rows = await self.fetch(statement, **values)
        return rows[0] if rows else None


@dataclass(frozen=True)
class Database(StatementRunner):
    """The engine, its session factory and a fair queue for its connections.

    Kept on `app.state.db`. Requests reach the database through `connect()` (a pooled asyncpg
    connection for single statements, the fast path) or `session()` (the ORM).
    """

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # One slot per pooled connection. The pool's own queue lets a newcomer take a connection
    # just handed to a waiting request, so under load a few requests waited seconds; the
    # semaphore serves waiting requests first come, first served.
    slots: asyncio.Semaphore
    slot_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        """Build the engine, its session factory and its slots."""
        engine = create_engine(settings)
        return cls(
            engine,
            async_sessionmaker(engine, expire_on_commit=False),
            asyncio.Semaphore(settings.db_pool_size + settings.db_max_overflow),
            settings.db_pool_timeout,
        )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the pool's connections' slots; `TimeoutError` of SQLAlchemy's when
        none frees up within the pool timeout, as the pool itself would raise."""
        if self.slots.locked():
            try:
                async with asyncio.timeout(self.slot_timeout):
                    await self.slots.acquire()
            except TimeoutError as error:
                raise exc.TimeoutError(
                    f"no database connection free within {self.slot_timeout:g} s"
                ) from error
        else:
            await self.slots.acquire()
        try:
            yield
        finally:
            self.slots.release()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection outside any transaction: each statement commits alone.

        For the hot paths, whose work is one statement: no session, no ORM, no BEGIN.
        """
        async with self.slot():
            pooled = await self._checkout()
            driver: asyncpg.Connection = pooled.driver_connection
            try:
                yield driver
            except BaseException as error:
                # What SQLAlchemy does for its own statements: a connection that failed this
                # way is closed, never handed to the next request.
                if driver.is_closed() or isinstance(error, _CONNECTION_LOST):
                    pooled.invalidate(error)
                raise
            finally:
                if pooled.dbapi_connection is not None:
                    pooled.close()

    async def fetch(self, statement: "DriverStatement", **values: Any) -> list[asyncpg.Record]:
        """Every row of one statement, run on a pooled connection (committed on its own)."""
        try:
            return await self._fetch_once(statement, values)
        except asyncpg.InternalClientError as error:
            if not _never_sent(error):
                raise
        return await self._fetch_once(statement, values)

    async def _fetch_once(
        self, statement: "DriverStatement", values: dict[str, Any]
    ) -> list[asyncpg.Record]:
        async with self.connect() as connection:
            return await statement.fetch(connection, **values)

    async def _checkout(self) -> PoolProxiedConnection:
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            return await self.engine.raw_connection()
        except dbapi_error as error:
            # Wrapped as `engine.connect()` would, so a failed connect reads the same everywhere.
            raise exc.DBAPIError.instance(None, None, error, dbapi_error) from error

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session, closed (and rolled back if uncommitted) at the end."""
        async with self.slot(), self.sessionmaker() as session:
            yield session


async def get_database(request: Request) -> Database:
    """The application's database handle.

    A coroutine, so FastAPI calls it in the event loop rather than in a worker thread.
    """
    database: Database = request.app.state.db
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_session(database: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """One session per request, closed (and rolled back if uncommitted) when the request ends.

    The request waits its turn for a connection slot first, so the session never waits
    on the pool.
    """
    async with database.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


# asyncpg's own placeholders ($1, $2, ...), as the asyncpg dialect renders them for itself.
_DRIVER_DIALECT = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class DriverStatement:
    """A Core statement compiled once to asyncpg's SQL, for the hot paths.

    Run straight on an asyncpg connection, it skips the ORM and SQLAlchemy's per-execution
    work; outside a transaction (`Database.connect()`) it is its own transaction.
    """

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    @classmethod
    def compile(cls, statement: ClauseElement) -> "DriverStatement":
        """Compile `statement`; its bind parameters are filled by name at each run."""
        compiled = statement.compile(dialect=_DRIVER_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        return cls(str(compiled), tuple(compiled.positiontup or ()), compiled.params)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `values`, literal values of the statement filled in."""
        return [values[name] if name in values else self.defaults[name] for name in self.names]

    async def fetch(self, connection: asyncpg.Connection, **values: Any) -> list[asyncpg.Record]:
        """Every row the statement returns."""
        rows: list[asyncpg.Record] = await connection.fetch(self.sql, *self.arguments(values))
        return rows


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, for a `DriverStatement` in its transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN only before its own first statement: call this
    once the session has begun its transaction (the statement would commit alone otherwise).
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


@dataclass(frozen=True)
class InSession(StatementRunner):
    """Runs driver statements on a session's connection, inside the transaction it began."""

    session: AsyncSession

    async def fetch(self, statement: DriverStatement, **values: Any) -> list[asyncpg.Record]:
        """Every row the statement returns."""
        return await statement.fetch(await driver_connection(self.session), **values)
