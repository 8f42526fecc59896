"""The database plumbing: pooled connections that Postgres closed are never handed out,
waiting requests are served in arrival order, and statements run as compiled."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import bindparam, select

from branchloans.db import Database, PoolTimeoutError, Statement
from branchloans.loans.models import Loan
from tests.support import DatabaseInTransaction, make_settings, terminate_app_connections


async def test_request_after_postgres_closed_the_pooled_connections_succeeds(
    committed_client: httpx.AsyncClient, committed_database_url: str
) -> None:
    assert (await committed_client.get("/api/stats")).status_code == 200
    terminated = await terminate_app_connections(committed_database_url)
    assert terminated >= 1

    responses = [await committed_client.get(path) for path in ("/api/stats", "/api/loans")]

    assert [response.status_code for response in responses] == [200, 200]


@pytest.fixture
async def one_connection_database(database_url: str) -> AsyncIterator[Database]:
    """A database handle whose pool holds a single connection, given up after 0.5 s."""
    settings = make_settings(database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.5)
    database = await Database.open(settings)
    yield database
    await database.close()


async def test_waiting_requests_get_the_connection_in_arrival_order(
    one_connection_database: Database,
) -> None:
    served: list[str] = []
    release = asyncio.Event()

    async def use(name: str) -> None:
        async with one_connection_database.connection() as connection:
            served.append(name)
            await connection.fetchval("SELECT 1")
            if name == "first":
                await release.wait()

    first = asyncio.create_task(use("first"))
    await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(use(f"waiting {n}")) for n in range(3)]
    await asyncio.sleep(0.05)
    release.set()
    # Arrives as the connection is handed on: it must queue behind those already waiting.
    latecomer = asyncio.create_task(use("latecomer"))
    await asyncio.gather(first, *waiting, latecomer)

    assert served == ["first", "waiting 0", "waiting 1", "waiting 2", "latecomer"]


async def test_no_free_connection_within_the_pool_timeout_is_a_pool_timeout(
    one_connection_database: Database,
) -> None:
    async with one_connection_database.connection():
        with pytest.raises(PoolTimeoutError):
            async with one_connection_database.connection():
                pass


async def test_a_connection_postgres_ended_during_use_is_not_pooled_again(
    one_connection_database: Database,
) -> None:
    async with one_connection_database.connection() as connection:
        first_pid = connection.get_server_pid()

    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        async with one_connection_database.connection() as connection:
            await connection.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    async with one_connection_database.connection() as connection:
        assert await connection.fetchval("SELECT 1") == 1
        assert connection.get_server_pid() != first_pid


def test_a_statement_keeps_the_literal_values_of_its_query() -> None:
    statement = Statement.compile(
        select(Loan.id).where(Loan.currency == bindparam("currency")).limit(7)
    )

    assert statement.sql.count("$") == 2
    assert statement.arguments({"currency": "KES"}) == ["KES", 7]


async def test_a_transaction_commits_its_statements_together(
    one_connection_database: Database,
) -> None:
    async with one_connection_database.connection() as connection:
        await connection.execute("CREATE TEMPORARY TABLE seen (n int)")

    async def insert_then_fail() -> None:
        async with one_connection_database.transaction() as transaction:
            await transaction.connection.execute("INSERT INTO seen VALUES (41)")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await insert_then_fail()

    async with one_connection_database.transaction() as transaction:
        await transaction.connection.execute("INSERT INTO seen VALUES (42)")

    async with one_connection_database.connection() as connection:
        assert await connection.fetch("SELECT n FROM seen") == [(42,)]


async def test_a_statement_runs_inside_the_transaction_it_is_given(
    database: DatabaseInTransaction,
) -> None:
    async with database.transaction() as transaction:
        rows = await transaction.fetch(Statement.compile(select(Loan.id).limit(1)))
        assert transaction.connection.is_in_transaction()
    assert rows == []


async def test_statements_are_planned_for_the_values_at_hand(
    one_connection_database: Database,
) -> None:
    # Prepared statements would otherwise settle on a generic plan, which reads a page of
    # a rare currency through the list-order index and filters it.
    async with one_connection_database.connection() as connection:
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
