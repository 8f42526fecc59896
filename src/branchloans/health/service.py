"""Checks behind the probes, each bounded in time so a probe never hangs."""

import asyncio
import time
from dataclasses import dataclass, field

from sqlalchemy import column, func, select, table

from branchloans.db import Database, Statement
from branchloans.health.schemas import Check, CheckStatus

API_CHECK = Check(status=CheckStatus.HEALTHY, message="API service is running")


def _unhealthy(message: str) -> Check:
    return Check(status=CheckStatus.UNHEALTHY, message=message)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "Database did not answer in time"
    return f"Database unreachable ({type(error).__name__})"


# Postgres resolves the table when it plans a statement, so whether Alembic ever ran is
# asked first.
_MIGRATED = Statement.compile(select(func.to_regclass("alembic_version").is_not(None)))
_REVISION = Statement.compile(select(column("version_num")).select_from(table("alembic_version")))


async def _current_revision(database: Database) -> str | None:
    migrated = await database.fetchrow(_MIGRATED)
    if migrated is None or not migrated[0]:
        return None
    row = await database.fetchrow(_REVISION)
    return None if row is None else str(row[0])


async def check_database(database: Database, seconds: float) -> Check:
    """Whether Postgres answers a query within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            await database.ping()
    except Exception as error:
        return _unhealthy(_describe(error))
    return Check(status=CheckStatus.HEALTHY, message="Database connection successful")


@dataclass
class RecentDatabaseCheck:
    """The database check, its result reused for up to `max_age` seconds.

    Every balancer probes every few seconds; one round trip a second answers them all, and
    concurrent probes wait for the one in flight rather than each making their own.
    """

    max_age: float = 1.0
    _result: Check | None = None
    _checked_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _fresh(self) -> Check | None:
        age = time.monotonic() - self._checked_at
        if self._result is None or age >= self.max_age:
            return None
        return self._result.model_copy(update={"age_seconds": round(age, 6)})

    async def check(self, database: Database, seconds: float) -> Check:
        """A result at most `max_age` old, or a new check bounded by `seconds`."""
        if (reused := self._fresh()) is not None:
            return reused
        async with self._lock:
            if (reused := self._fresh()) is not None:
                return reused
            result = await check_database(database, seconds)
            self._result, self._checked_at = result, time.monotonic()
            return result.model_copy(update={"age_seconds": 0.0})


async def check_schema(
    database: Database, head: str | None, known: frozenset[str], seconds: float
) -> Check:
    """Whether the database answers and its schema is at this code's head or beyond it.

    A revision this code does not know comes from a newer release whose migration already
    ran: its migrations keep the previous release working, so this one stays ready while a
    rollout replaces it. A known revision other than the head means a migration is missing.
    """
    try:
        async with asyncio.timeout(seconds):
            revision = await _current_revision(database)
    except Exception as error:
        return _unhealthy(_describe(error))
    if revision == head:
        return Check(status=CheckStatus.HEALTHY, message=f"Schema at revision {revision}")
    if revision is not None and revision not in known:
        return Check(status=CheckStatus.HEALTHY, message=f"Schema at {revision}, newer than {head}")
    return _unhealthy(f"Schema is at {revision or 'no revision'}, expected {head}")


DRAINING = _unhealthy("Shutting down: finishing requests in flight")
