"""The five demo loans of the seed API, one per status it knew."""

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

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


async def seed_demo_loans(session: AsyncSession) -> int:
    """Insert the demo loans that are not there yet, each with one event saying so.

    Returns how many were inserted.
    """
    rows = [
        {**loan, "disbursed_at": func.now() if loan["status"] in _PAID_OUT else None}
        for loan in DEMO_LOANS
    ]
    inserted = (
        await session.execute(
            pg_insert(Loan)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[Loan.id])
            .returning(Loan.id, Loan.status)
        )
    ).all()
    if inserted:
        await session.execute(
            insert(LoanEvent).values(
                [
                    {"loan_id": loan_id, "to_status": status, "reason": "demo data"}
                    for loan_id, status in inserted
                ]
            )
        )
    await session.commit()
    return len(inserted)
