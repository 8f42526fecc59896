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


async def check_schema(engine: AsyncEngine, expected_revision: str | None, seconds: float) -> Check:
    """Whether the database answers and its schema is at the revision this code expects."""
    try:
        async with asyncio.timeout(seconds), engine.connect() as connection:
            revision = await current_revision(connection)
    except Exception as error:
        return _unhealthy(_describe(error))
    if revision != expected_revision:
        return _unhealthy(f"Schema is at {revision or 'no revision'}, expected {expected_revision}")
    return Check(status=CheckStatus.HEALTHY, message=f"Schema at revision {revision}")
