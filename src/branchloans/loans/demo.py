"""The five demo loans of the seed API, one per status it knew."""

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from branchloans.db import Queries, Statement
from branchloans.loans.models import Loan, LoanEvent, LoanStatus

_PAID_OUT = {LoanStatus.DISBURSED, LoanStatus.REPAID, LoanStatus.DEFAULTED}

DEMO_LOANS: tuple[dict[str, Any], ...] = tuple(
    {
        "id": uuid.UUID(int=number),
        "borrower_id": borrower_id,
        "amount": Decimal(amount),
        "currency": currency,
        "status": loan_status,
        "term_months": term_months,
        "interest_rate_apr": Decimal(apr),
    }
    for number, borrower_id, amount, currency, loan_status, term_months, apr in (
        (1, "usr_kenya_001", "12000.00", "KES", LoanStatus.PENDING, 6, "24.00"),
        (2, "usr_india_001", "15000.00", "INR", LoanStatus.APPROVED, 12, "18.50"),
        (3, "usr_nigeria_001", "45000.00", "NGN", LoanStatus.REJECTED, 9, "30.00"),
        (4, "usr_vietnam_001", "35000", "VND", LoanStatus.DISBURSED, 12, "20.00"),
        (5, "usr_philippines_001", "8000.00", "PHP", LoanStatus.REPAID, 3, "15.00"),
    )
)


def _seed_statement() -> Statement:
    rows = [
        {**loan, "version": 1, "disbursed_at": func.now() if loan["status"] in _PAID_OUT else None}
        for loan in DEMO_LOANS
    ]
    inserted = (
        pg_insert(Loan)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[Loan.id])
        .returning(Loan.id, Loan.status)
        .cte("inserted")
    )
    events = (
        insert(LoanEvent)
        .from_select(
            ["loan_id", "to_status", "reason"],
            select(inserted.c.id, inserted.c.status, literal("demo data")),
        )
        .returning(LoanEvent.loan_id)
        .cte("events")
    )
    return Statement.compile(select(func.count()).select_from(events))


_SEED = _seed_statement()


async def seed_demo_loans(queries: Queries) -> int:
    """Insert the demo loans that are not there yet, each with one event saying so, in one
    statement. Returns how many were inserted."""
    row = await queries.fetchrow(_SEED)
    return int(row[0]) if row else 0
