"""The five demo loans of the seed API, one per status it knew."""

import uuid
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.loans.models import Loan, LoanStatus

DEMO_LOANS: tuple[dict[str, object], ...] = tuple(
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
    """Insert the demo loans that are not there yet; returns how many were inserted."""
    inserted = await session.scalars(
        insert(Loan)
        .values(list(DEMO_LOANS))
        .on_conflict_do_nothing(index_elements=[Loan.id])
        .returning(Loan.id)
    )
    count = len(inserted.all())
    await session.commit()
    return count
