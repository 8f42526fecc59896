"""Database engine, session factory and the FastAPI session dependency."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

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


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine whose pool and timeouts come from the settings."""
    statement_timeout_ms = int(settings.db_statement_timeout * 1000)
    return create_async_engine(
        settings.database_url.encoded_string(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # A connection Postgres closed while idle is replaced before use, not handed to a request.
        pool_pre_ping=True,
        connect_args={
            "timeout": settings.db_connect_timeout,
            # Client side, so a query on a connection the network stalled still ends; the
            # server's statement_timeout below ends first while the server can be reached.
            "command_timeout": settings.db_statement_timeout + 1,
            "server_settings": {
                "application_name": "branchloans",
                "statement_timeout": str(statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(statement_timeout_ms * 3),
            },
        },
    )


@dataclass(frozen=True)
class Database:
    """The engine and the session factory bound to it, kept on `app.state.db`."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        """Build the engine and its session factory."""
        engine = create_engine(settings)
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False))


async def get_database(request: Request) -> Database:
    """The application's database handle.

    A coroutine, so FastAPI calls it in the event loop rather than in a worker thread.
    """
    database: Database = request.app.state.db
    return database


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    """One session per request, closed (and rolled back if uncommitted) when the request ends."""
    async with database.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
DatabaseDep = Annotated[Database, Depends(get_database)]
