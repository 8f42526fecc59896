"""Loans per status, from loan_totals: the triggers keep them right, whoever writes and how."""

import asyncio

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from branchloans.db import Database, Queries
from branchloans.loans.listing import get_stats
from branchloans.loans.models import LoanStatus
from branchloans.migrate import alembic_config, upgrade_to_head
from tests.support import HISTORY_ASIDE, DatabaseInTransaction, make_settings


async def count_loans_by_status(queries: Queries) -> dict[LoanStatus, int]:
    """Loans per status, as the statistics and the metrics read them from loan_totals."""
    return (await get_stats(queries)).by_status


INSERT = text(
    "INSERT INTO loans (id, borrower_id, amount, currency, status, disbursed_at)"
    " SELECT gen_random_uuid(), 'b', 10, 'USD', status,"
    " CASE WHEN status IN ('disbursed', 'repaid', 'defaulted') THEN now() END"
    " FROM unnest(CAST(:statuses AS text[])) AS status"
)


async def insert(session: AsyncSession, *statuses: str) -> None:
    await session.execute(INSERT, {"statuses": list(statuses)})


async def changes(database: Queries, before: dict[LoanStatus, int]) -> dict[str, int]:
    after = await count_loans_by_status(database)
    return {
        status.value: after[status] - before[status]
        for status in LoanStatus
        if after[status] != before[status]
    }


async def test_every_status_is_reported(database: DatabaseInTransaction) -> None:
    counts = await count_loans_by_status(database)

    assert set(counts) == set(LoanStatus)


async def test_inserted_loans_are_counted_by_status(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    before = await count_loans_by_status(database)

    await insert(session, "pending", "pending", "approved")
    await insert(session, "pending")

    assert await changes(database, before) == {"pending": 3, "approved": 1}


async def test_a_status_change_moves_the_loan(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    await insert(session, "pending", "pending")
    before = await count_loans_by_status(database)

    await session.execute(
        text(
            "UPDATE loans SET status = 'approved'"
            " WHERE id = (SELECT id FROM loans WHERE status = 'pending' LIMIT 1)"
        )
    )

    assert await changes(database, before) == {"pending": -1, "approved": 1}


async def test_an_update_that_keeps_the_status_changes_nothing(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    await insert(session, "repaid")
    before = await count_loans_by_status(database)

    await session.execute(text("UPDATE loans SET updated_at = updated_at + interval '1 second'"))

    assert await changes(database, before) == {}


async def test_deleted_loans_are_no_longer_counted(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    await insert(session, "rejected", "rejected", "defaulted")
    before = await count_loans_by_status(database)

    await session.execute(text(HISTORY_ASIDE))
    await session.execute(text("DELETE FROM loans WHERE status = 'rejected'"))

    after = await count_loans_by_status(database)
    assert await changes(database, before) == {"rejected": -before[LoanStatus.REJECTED]}
    assert after[LoanStatus.REJECTED] == 0


async def test_truncating_loans_empties_the_counts(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    await insert(session, "disbursed")

    await session.execute(text(HISTORY_ASIDE))
    await session.execute(text("TRUNCATE loans CASCADE"))

    assert set((await count_loans_by_status(database)).values()) == {0}


@pytest.fixture
def database_at_0001(empty_database_url: str) -> str:
    """A database migrated to the revision before loan_status_counts existed."""
    command.upgrade(alembic_config(empty_database_url), "0001")
    return empty_database_url


async def _execute(database_url: str, *statements: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _counts(database_url: str) -> dict[LoanStatus, int]:
    database = await Database.open(make_settings(database_url))
    try:
        return await count_loans_by_status(database)
    finally:
        await database.close()


def test_the_migration_counts_the_loans_already_there(database_at_0001: str) -> None:
    asyncio.run(
        _execute(
            database_at_0001,
            "INSERT INTO loans (id, borrower_id, amount, currency, status) VALUES"
            " (gen_random_uuid(), 'a', 1, 'USD', 'repaid'),"
            " (gen_random_uuid(), 'b', 2, 'USD', 'repaid'),"
            " (gen_random_uuid(), 'c', 3, 'USD', 'pending')",
        )
    )

    upgrade_to_head(database_at_0001)

    counts = asyncio.run(_counts(database_at_0001))
    assert counts[LoanStatus.REPAID] == 2
    assert counts[LoanStatus.PENDING] == 1
    assert sum(counts.values()) == 3
