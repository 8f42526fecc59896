"""What the API does with loans, in SQL."""

import uuid
from collections.abc import Sequence
from datetime import UTC, date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.loans.models import Loan, LoanStatus
from branchloans.loans.schedule import UnpayableAmountError, build_schedule
from branchloans.loans.schemas import CENT, LoanCreate, LoanSchedule, LoanStats
from branchloans.problems import ProblemError


class LoanNotFoundError(ProblemError):
    """No loan has the requested id."""

    def __init__(self, loan_id: uuid.UUID) -> None:
        super().__init__(
            404, f"No loan has id {loan_id}.", slug="loan-not-found", title="Loan not found"
        )


class ScheduleUnavailableError(ProblemError):
    """The loan lacks what a repayment schedule is computed from."""

    def __init__(self, detail: str, missing: list[str] | None = None) -> None:
        extensions: dict[str, Any] = {} if missing is None else {"missing": missing}
        super().__init__(
            409, detail, slug="schedule-unavailable", title="Schedule unavailable", **extensions
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


def schedule_start(loan: Loan) -> date:
    """The day a loan's instalments are counted from: the day (UTC) it was created."""
    return loan.created_at.astimezone(UTC).date()


async def get_schedule(session: AsyncSession, loan_id: uuid.UUID) -> LoanSchedule:
    """The repayment schedule of the loan with this id.

    `LoanNotFoundError` when there is no such loan; `ScheduleUnavailableError` when it has no
    term or no rate (the problem's `missing` lists which), or an amount its currency cannot pay
    exactly.
    """
    loan = await get_loan(session, loan_id)
    term, apr = loan.term_months, loan.interest_rate_apr
    if term is None or apr is None:
        missing = [
            name
            for name, value in (("term_months", term), ("interest_rate_apr", apr))
            if value is None
        ]
        raise ScheduleUnavailableError(
            f"Loan {loan_id} has no {' and no '.join(missing)}; "
            "a schedule needs both term_months and interest_rate_apr.",
            missing=missing,
        )
    try:
        schedule = build_schedule(loan.amount, loan.currency, term, apr, schedule_start(loan))
    except UnpayableAmountError as error:
        raise ScheduleUnavailableError(
            f"Loan {loan_id} cannot be scheduled exactly: {error}."
        ) from error
    return LoanSchedule(loan_id=loan.id, **dict(schedule))
