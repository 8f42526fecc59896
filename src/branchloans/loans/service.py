"""What the API does with loans, in SQL."""

import uuid
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.loans.models import Loan, LoanStatus, LoanStatusCount
from branchloans.loans.schemas import CENT, LoanCreate, LoanStats
from branchloans.problems import ProblemError


class LoanNotFoundError(ProblemError):
    """No loan has the requested id."""

    def __init__(self, loan_id: uuid.UUID) -> None:
        super().__init__(
            404, f"No loan has id {loan_id}.", slug="loan-not-found", title="Loan not found"
        )


async def create_loan(session: AsyncSession, application: LoanCreate) -> Loan:
    """Store a new pending loan and commit it."""
    loan: Loan | None = await session.scalar(
        insert(Loan).values(**application.model_dump()).returning(Loan)
    )
    assert loan is not None
    await session.commit()
    return loan


async def get_loan(session: AsyncSession, loan_id: uuid.UUID) -> Loan:
    """The loan with this id, or `LoanNotFoundError`."""
    loan = await session.get(Loan, loan_id)
    if loan is None:
        raise LoanNotFoundError(loan_id)
    return loan


async def list_loans(session: AsyncSession) -> Sequence[Loan]:
    """Every loan, newest first."""
    result = await session.scalars(select(Loan).order_by(Loan.created_at.desc(), Loan.id.desc()))
    return result.all()


async def get_stats(session: AsyncSession) -> LoanStats:
    """Counts and totals over all loans, by status and by currency, in one scan."""
    count, total = func.count(), func.coalesce(func.sum(Loan.amount), 0)
    rows = await session.execute(
        select(Loan.status, Loan.currency, count, total).group_by(
            text("GROUPING SETS ((status), (currency), ())")
        )
    )
    by_status = dict.fromkeys(LoanStatus, 0)
    by_currency: dict[str, int] = {}
    amount_by_currency: dict[str, Decimal] = {}
    total_loans, total_amount = 0, Decimal(0)
    for status, currency, loans, amount in rows:
        if status is not None:
            by_status[LoanStatus(status)] = loans
        elif currency is not None:
            by_currency[currency] = loans
            amount_by_currency[currency] = amount
        else:
            total_loans, total_amount = loans, amount
    average = (total_amount / total_loans) if total_loans else Decimal(0)
    return LoanStats(
        total_loans=total_loans,
        total_amount=total_amount.quantize(CENT),
        avg_amount=average.quantize(CENT, rounding=ROUND_HALF_EVEN),
        by_status=by_status,
        by_currency=dict(sorted(by_currency.items())),
        amount_by_currency=dict(sorted(amount_by_currency.items())),
    )


async def count_loans_by_status(session: AsyncSession) -> dict[LoanStatus, int]:
    """Loans per status, every status included, from the counts Postgres keeps: no scan of loans."""
    rows = await session.execute(
        select(LoanStatusCount.status, func.sum(LoanStatusCount.loans)).group_by(
            LoanStatusCount.status
        )
    )
    counts = dict.fromkeys(LoanStatus, 0)
    for status, loans in rows:
        counts[LoanStatus(status)] = int(loans)
    return counts
