"""The one way to the database: SQLAlchemy Core statements, compiled once, run on asyncpg's pool.

Tables are declared with SQLAlchemy (for Alembic and to build statements); every query the
service runs is a `Statement` run through `Queries`: the `Database` itself (each statement
its own transaction) or a `Transaction` of it (statements that commit together).
"""

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson
from opentelemetry import trace
from sqlalchemy import ClauseElement, MetaData, literal, select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.compiler import SQLCompiler

from branchloans.config import Settings
from branchloans.observability import tracing

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


# Errors after which a connection may be mid-protocol or gone: it is closed, never reused.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,  # TimeoutError included: a statement the network stalled
    asyncio.CancelledError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the backend was terminated, or shuts down
    # Postgres ended the connection while it sat in the pool and asyncpg has read the
    # goodbye but not yet the close: the next statement finds the protocol in a bad state.
    asyncpg.InternalClientError,
)
# SQLSTATEs that mean "the database is not there for us right now", not "this query is wrong":
# connection exceptions (class 08), shutdown or start-up in progress, no connection slots,
# and a database that does not exist (yet).
_OUTAGE_SQLSTATE_PREFIXES = ("08", "57P", "53300", "3D000")


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached, rather than that a query is wrong."""
    if isinstance(error, CONNECTION_LOST) and not isinstance(error, asyncio.CancelledError):
        return True
    sqlstate: str = getattr(error, "sqlstate", None) or ""
    return sqlstate.startswith(_OUTAGE_SQLSTATE_PREFIXES)


class PoolTimeoutError(TimeoutError):
    """No pooled connection came free within the pool timeout."""


def _never_sent(error: BaseException) -> bool:
    # asyncpg refuses to start a statement on a connection whose protocol is in a bad state
    # (Postgres's goodbye read, its close not yet), before writing anything: sending it again
    # elsewhere cannot repeat it. asyncpg's pool checks only for a close it has seen, so this
    # stays ours: tests/reliability/test_database_faults.py::
    # test_a_connection_postgres_ended_just_before_its_use_is_replaced_unseen
    return isinstance(error, asyncpg.InternalClientError) and str(error).startswith(
        "cannot switch to state"
    )


# asyncpg's own placeholders ($1, $2, ...), as the asyncpg dialect renders them for itself.
_DRIVER_DIALECT = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Statement:
    """A Core statement compiled once to asyncpg's SQL; its values are bound by name per run."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    @classmethod
    def compile(cls, statement: ClauseElement) -> "Statement":
        """Compile `statement`; its bind parameters are filled by name at each run."""
        compiled = statement.compile(dialect=_DRIVER_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        return cls(str(compiled), tuple(compiled.positiontup or ()), compiled.params)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `values`, literal values of the statement filled in."""
        return [values[name] if name in values else self.defaults[name] for name in self.names]


async def _run(
    connection: asyncpg.Connection, statement: Statement, values: Mapping[str, Any]
) -> list[asyncpg.Record]:
    # Every statement passes here, so each gets its span. Written by hand:
    # opentelemetry-instrumentation-asyncpg records no row count.
    span = tracing.statement_span(statement.sql)
    if span is None:
        rows: list[asyncpg.Record] = await connection.fetch(
            statement.sql, *statement.arguments(values)
        )
        return rows
    with trace.use_span(span, end_on_exit=True):
        rows = await connection.fetch(statement.sql, *statement.arguments(values))
        span.set_attribute(tracing.DB_ROWS, len(rows))
        return rows


class Queries(Protocol):
    """Where statements run: the `Database` (each its own transaction) or a `Transaction`."""

    async def fetch(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        """Every row the statement returns."""
        ...

    async def fetchrow(self, statement: Statement, **values: Any) -> asyncpg.Record | None:
        """The first row the statement returns, None when there is none."""
        rows = await self.fetch(statement, **values)
        return rows[0] if rows else None


@dataclass(frozen=True)
class Transaction(Queries):
    """Statements on one connection inside one transaction, committed together."""

    connection: asyncpg.Connection

    async def fetch(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        """Every row the statement returns."""
        return await _run(self.connection, statement, values)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A block whose statements are undone alone if it raises; the transaction goes on."""
        async with self.connection.transaction():
            yield


async def init_connection(connection: asyncpg.Connection) -> None:
    # JSON columns as Python values, as SQLAlchemy did; orjson for speed.
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name,
            schema="pg_catalog",
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    # asyncpg's default reset (RESET ALL, UNLISTEN, advisory locks...) is one more round trip
    # on every release; the service changes no session state (its settings are transaction
    # local), and an open transaction is still rolled back by asyncpg before this runs.
    return None


APPLICATION_NAME = "branchloans"


def pool_options(settings: Settings) -> dict[str, Any]:
    """asyncpg connection options from the settings."""
    statement_timeout_ms = int(settings.db_statement_timeout * 1000)
    options: dict[str, Any] = {
        "timeout": settings.db_connect_timeout,
        # Client side, so a query on a connection the network stalled still ends; the server's
        # statement_timeout below ends first while the server can be reached.
        "command_timeout": settings.db_statement_timeout + 1,
        "server_settings": {"application_name": APPLICATION_NAME},
    }
    if settings.db_transaction_pooler:
        # PgBouncer (1.18) hands each transaction to any server connection and tracks neither
        # prepared statements nor startup settings (it refuses those it does not know): each
        # statement is sent unnamed, planned for its values, and PgBouncer's own query_timeout
        # and idle_transaction_timeout bound the server side (docs/deployment.md).
        return {**options, "statement_cache_size": 0}
    return {
        **options,
        "server_settings": {
            "application_name": APPLICATION_NAME,
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(statement_timeout_ms * 3),
            # Statements are prepared once per connection. A generic plan, made for any value,
            # reads a filtered page through the list-order index and filters it, scanning far
            # for a rare currency or status; planned for the values at hand, the page reads the
            # filter's own index, however deep or rare.
            "plan_cache_mode": "force_custom_plan",
        },
    }


_PING = Statement.compile(select(literal(1)))
# Connections idle this long are closed, so a burst's extra connections do not linger.
IDLE_CONNECTION_SECONDS = 60.0


@dataclass(frozen=True)
class Database(Queries):
    """asyncpg's pool of connections, and a fair queue in front of it.

    Kept in the app's state. Requests reach the database through `fetch` (one statement,
    its own transaction) or `transaction()` (several, committed together).
    """

    pool: asyncpg.Pool
    pool_size: int
    # One slot per connection the pool may open. asyncpg's queue lets a newcomer take a
    # connection just handed to a waiting request, so under load a few requests waited
    # seconds; the semaphore serves them first come, first served:
    # tests/test_db.py::test_waiting_requests_get_the_connection_in_arrival_order
    slots: asyncio.Semaphore
    slot_timeout: float

    @classmethod
    async def open(cls, settings: Settings, url: str | None = None) -> "Database":
        """A pool of up to pool size + overflow connections, each opened when first needed,
        to `url` (a replica's) or else the settings' database URL."""
        from branchloans.migrate import asyncpg_dsn  # migrate imports nothing of ours back

        most = settings.db_pool_size + settings.db_max_overflow
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url or settings.database_url.encoded_string()),
            min_size=0,
            max_size=most,
            max_inactive_connection_lifetime=IDLE_CONNECTION_SECONDS,
            init=init_connection,
            reset=_keep_session,
            **pool_options(settings),
        )
        return cls(pool, settings.db_pool_size, asyncio.Semaphore(most), settings.db_pool_timeout)

    async def close(self) -> None:
        """Close every connection, waiting at most the pool timeout for those in use."""
        try:
            await asyncio.wait_for(self.pool.close(), self.slot_timeout)
        except TimeoutError:
            self.pool.terminate()

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self.slots.locked():
            try:
                async with asyncio.timeout(self.slot_timeout):
                    await self.slots.acquire()
            except TimeoutError as error:
                raise PoolTimeoutError(
                    f"no database connection free within {self.slot_timeout:g} s"
                ) from error
        else:
            await self.slots.acquire()
        try:
            yield
        finally:
            self.slots.release()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, in its turn; closed rather than pooled again if it failed."""
        async with self._slot(), self.pool.acquire() as connection:
            try:
                yield connection
            except CONNECTION_LOST:
                # Possibly mid-protocol: closed now, so the pool opens a fresh one next time.
                # A connection asyncpg saw closed is already back in the pool, detached.
                with suppress(asyncpg.InterfaceError):
                    connection.terminate()
                raise

    async def fetch(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        """Every row of one statement, run on a pooled connection (committed on its own).

        A statement refused before it was sent is sent again on the next connection: when
        Postgres ended many at once, several may be waiting in the pool in that state (each
        one tried is closed), so up to one try per connection the pool may hold.
        """
        for _ in range(self.pool.get_max_size()):
            try:
                return await self._fetch_once(statement, values)
            except asyncpg.InternalClientError as error:
                if not _never_sent(error):
                    raise
        return await self._fetch_once(statement, values)

    async def _fetch_once(
        self, statement: Statement, values: dict[str, Any]
    ) -> list[asyncpg.Record]:
        async with self.connection() as connection:
            return await _run(connection, statement, values)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        async with self.connection() as connection, connection.transaction():
            yield Transaction(connection)

    async def ping(self) -> None:
        """One round trip to Postgres; raises when it cannot be made."""
        await self.fetch(_PING)

    async def role(self) -> tuple[str, bool]:
        """The role the pool connects as, and whether it is a superuser (both reported by
        Postgres when a connection starts: no query)."""
        async with self.connection() as connection:
            reported = connection.get_settings()
            return reported.session_authorization, reported.is_superuser == "on"

    def pool_state(self) -> tuple[int, int]:
        """(connections open, connections in use) of this worker's pool."""
        size = self.pool.get_size()
        return size, size - self.pool.get_idle_size()
