"""The table's own constraints refuse what the API refuses, whoever writes."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

INSERT = text(
    "INSERT INTO loans (id, borrower_id, amount, currency, status, term_months, interest_rate_apr)"
    " VALUES (gen_random_uuid(), :borrower_id, :amount, :currency, :status, :term, :apr)"
)
VALID = {
    "borrower_id": "b",
    "amount": 10,
    "currency": "USD",
    "status": "pending",
    "term": 12,
    "apr": 10,
}


async def test_valid_row_is_stored(session: AsyncSession) -> None:
    await session.execute(INSERT, VALID)


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 0},
        {"amount": 50000.01},
        {"currency": "usd"},
        {"status": "lost"},
        {"term": 0},
        {"term": 361},
        {"apr": -1},
        {"apr": 100.01},
        {"borrower_id": "  "},
    ],
)
async def test_invalid_row_is_refused_by_postgres(
    session: AsyncSession, change: dict[str, object]
) -> None:
    with pytest.raises(IntegrityError):
        await session.execute(INSERT, {**VALID, **change})
