"""Checks behind the probes, each bounded in time so a probe never hangs."""

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from branchloans.health.schemas import Check, CheckStatus
from branchloans.migrate import current_revision

API_CHECK = Check(status=CheckStatus.HEALTHY, message="API service is running")


def _unhealthy(message: str) -> Check:
    return Check(status=CheckStatus.UNHEALTHY, message=message)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "Database did not answer in time"
    return f"Database unreachable ({type(error).__name__})"


async def check_database(engine: AsyncEngine, seconds: float) -> Check:
    """Whether Postgres answers a query within `seconds`."""
    try:
        async with asyncio.timeout(seconds), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        return _unhealthy(_describe(error))
    return Check(status=CheckStatus.HEALTHY, message="Database connection successful")


async def check_schema(
    engine: AsyncEngine, head: str | None, known: frozenset[str], seconds: float
) -> Check:
    """Whether the database answers and its schema is at this code's head or beyond it.

    A revision this code does not know comes from a newer release whose migration already
    ran: its migrations keep the previous release working, so this one stays ready while a
    rollout replaces it. A known revision other than the head means a migration is missing.
    """
    try:
        async with asyncio.timeout(seconds), engine.connect() as connection:
            revision = await current_revision(connection)
    except Exception as error:
        return _unhealthy(_describe(error))
    if revision == head:
        return Check(status=CheckStatus.HEALTHY, message=f"Schema at revision {revision}")
    if revision is not None and revision not in known:
        return Check(status=CheckStatus.HEALTHY, message=f"Schema at {revision}, newer than {head}")
    return _unhealthy(f"Schema is at {revision or 'no revision'}, expected {head}")


DRAINING = _unhealthy("Shutting down: finishing requests in flight")
