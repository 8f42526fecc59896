"""Repayments in SQL: record a payment against a loan's schedule, list them, and what is owed."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Numeric, String, bindparam, case, func, insert, select, update

from branchloans.currencies import MINOR_UNITS, minor_unit
from branchloans.db import Queries, Statement, Transaction
from branchloans.loans.errors import (
    LoanNotFoundError,
    NothingPastDueError,
    PaymentRefusedError,
    RepaymentNotAllowedError,
)
from branchloans.loans.lifecycle import LoanAction
from branchloans.loans.models import Loan, LoanEvent, LoanStatus, Repayment
from branchloans.loans.repayment_schemas import (
    RepaymentCreate,
    RepaymentRead,
    ServicedInstalment,
    ServicedSchedule,
)
from branchloans.loans.rows import LOAN_COLUMNS, LoanRow, VersionedLoan, loan_row
from branchloans.loans.schedule_schemas import RepaymentSchedule
from branchloans.loans.service import ChangeContext, read_loan, schedule_of, transition_loan
from branchloans.loans.servicing import Allocated, Ledger, OverpaymentError

_LOCK_LOAN = Statement.compile(
    select(*LOAN_COLUMNS, Loan.version).where(Loan.id == bindparam("loan_id")).with_for_update()
)
_REPAYMENT_COLUMNS = (
    Repayment.id,
    Repayment.loan_id,
    Repayment.amount,
    Repayment.interest,
    Repayment.principal,
    Repayment.allocation,
    Repayment.paid_at,
    Repayment.reference,
    Repayment.recorded_at,
)
_ALLOCATIONS = Statement.compile(
    select(Repayment.allocation)
    .where(Repayment.loan_id == bindparam("loan_id"))
    .order_by(Repayment.id)
)
# The loan's row joined to its payments: no row at all means no such loan.
_LIST_REPAYMENTS = Statement.compile(
    select(*_REPAYMENT_COLUMNS, Loan.status, Loan.currency)
    .select_from(Loan)
    .outerjoin(Repayment, Repayment.loan_id == Loan.id)
    .where(Loan.id == bindparam("loan_id"))
    .order_by(Repayment.id)
)


def _record_statement() -> Statement:
    # One statement stores the payment, updates the loan's balances and status, and writes
    # the event: one round trip, in the caller's transaction (the loan is locked already).
    payment = (
        insert(Repayment)
        .values(
            loan_id=bindparam("loan_id"),
            amount=bindparam("amount", type_=Numeric),
            interest=bindparam("interest", type_=Numeric),
            principal=bindparam("principal", type_=Numeric),
            allocation=bindparam("allocation"),
            paid_at=bindparam("paid_at"),
            reference=bindparam("reference", type_=String),
            request_id=bindparam("request_id", type_=String),
            actor=bindparam("actor", type_=String),
        )
        .returning(*_REPAYMENT_COLUMNS)
        .cte("payment")
    )
    changed = (
        update(Loan)
        .where(Loan.id == bindparam("loan_id"))
        .values(
            status=bindparam("status", type_=String),
            version=Loan.version + 1,
            updated_at=func.statement_timestamp(),
            outstanding_principal=bindparam("outstanding", type_=Numeric),
            oldest_unpaid_due=bindparam("oldest_unpaid_due", type_=Date),
        )
        .returning(Loan.id, Loan.status, Loan.currency)
        .cte("changed")
    )
    event = insert(LoanEvent).from_select(
        ["loan_id", "from_status", "to_status", "reason", "request_id", "actor", "amount"],
        select(
            changed.c.id,
            bindparam("from_status", type_=String),
            changed.c.status,
            case(
                (payment.c.reference.is_(None), "Repayment " + payment.c.id.cast(String)),
                else_="Repayment " + payment.c.id.cast(String) + ": " + payment.c.reference,
            ),
            bindparam("request_id", type_=String),
            bindparam("actor", type_=String),
            payment.c.amount,
        ).select_from(changed.join(payment, payment.c.loan_id == changed.c.id)),
    )
    return Statement.compile(
        select(payment, changed.c.status, changed.c.currency)
        .select_from(payment.join(changed, changed.c.id == payment.c.loan_id))
        .add_cte(event.cte("event"))
    )


_RECORD = _record_statement()


def _read(row: Any) -> RepaymentRead:
    # The payment's columns, then the loan's status and currency.
    return RepaymentRead(**row, loan_status=row["status"])


async def _locked_loan(transaction: Transaction, loan_id: uuid.UUID) -> LoanRow:
    row = await transaction.fetchrow(_LOCK_LOAN, loan_id=loan_id)
    if row is None:
        raise LoanNotFoundError(loan_id)
    return loan_row(row)


async def _ledger(queries: Queries, loan_id: uuid.UUID, schedule: RepaymentSchedule) -> Ledger:
    # The payments' allocations, oldest first, against the schedule.
    rows = await queries.fetch(_ALLOCATIONS, loan_id=loan_id)
    return Ledger(
        schedule.instalments, (Allocated.of_json(part) for row in rows for part in row[0])
    )


def _check_payment(
    loan: LoanRow, payment: RepaymentCreate, now: datetime
) -> tuple[Decimal, datetime]:
    # The amount comes back with exactly the currency's decimals (5.5 KWD as 5.500), as stored.
    amount = payment.amount.quantize(minor_unit(loan["currency"]))
    if payment.amount != amount:
        raise PaymentRefusedError(
            f"{loan['currency']} amounts have at most {MINOR_UNITS[loan['currency']]} decimals."
        )
    paid_at = (payment.paid_at or now).astimezone(UTC)
    if paid_at > now:
        raise PaymentRefusedError("paid_at is in the future.")
    assert loan["disbursed_at"] is not None
    if paid_at < loan["disbursed_at"]:
        raise PaymentRefusedError("paid_at is before the loan was disbursed.")
    return amount, paid_at


async def record_repayment(
    transaction: Transaction,
    loan_id: uuid.UUID,
    payment: RepaymentCreate,
    context: ChangeContext,
    now: datetime,
) -> RepaymentRead:
    """Allocate `payment` to the loan's schedule and record it, in the caller's transaction.

    The loan is locked first, so concurrent payments are allocated one after the other, each
    against what the previous ones left. A payment that repays the last principal moves the
    loan to `repaid`. `RepaymentNotAllowedError` unless the loan is disbursed;
    `PaymentRefusedError` for an amount beyond the payoff amount (which it names) or finer than
    the currency's minor unit, or a `paid_at` in the future or before the disbursement.
    """
    loan = await _locked_loan(transaction, loan_id)
    if loan["status"] is not LoanStatus.DISBURSED:
        raise RepaymentNotAllowedError(loan["status"])
    amount, paid_at = _check_payment(loan, payment, now)
    ledger = await _ledger(transaction, loan_id, schedule_of(loan))
    try:
        parts = ledger.allocate(amount, paid_at.date())
    except OverpaymentError as error:
        raise PaymentRefusedError(
            f"The payment {error.amount} is more than the payoff amount {error.payoff} "
            f"{loan['currency']} on {paid_at.date().isoformat()}.",
            payoff_amount=error.payoff,
        ) from error
    outstanding = ledger.outstanding_principal
    status = LoanStatus.REPAID if not outstanding else LoanStatus.DISBURSED
    recorded = await transaction.fetchrow(
        _RECORD,
        loan_id=loan_id,
        amount=amount,
        interest=sum((part.interest for part in parts), Decimal(0)),
        principal=sum((part.principal for part in parts), Decimal(0)),
        allocation=[part.as_json() for part in parts],
        paid_at=paid_at,
        reference=payment.reference,
        request_id=context.request_id,
        actor=context.actor,
        status=status.value,
        from_status=LoanStatus.DISBURSED.value,
        outstanding=outstanding,
        oldest_unpaid_due=ledger.oldest_unpaid_due,
    )
    assert recorded is not None
    return _read(recorded)


async def list_repayments(queries: Queries, loan_id: uuid.UUID) -> list[RepaymentRead]:
    """The loan's payments, oldest first; `LoanNotFoundError` when there is no such loan."""
    rows = await queries.fetch(_LIST_REPAYMENTS, loan_id=loan_id)
    if not rows:
        raise LoanNotFoundError(loan_id)
    return [_read(row) for row in rows if row["id"] is not None]


async def serviced_schedule(queries: Queries, loan_id: uuid.UUID, today: date) -> ServicedSchedule:
    """The loan's schedule with what has been paid and what is owed as of `today`."""
    loan = (await read_loan(queries, loan_id)).loan
    schedule = schedule_of(loan)
    ledger = await _ledger(queries, loan_id, schedule)
    # Only a disbursed loan owes anything: before, nothing was lent; after, it is settled
    # (repaid, or written off).
    owing = loan["status"] is LoanStatus.DISBURSED
    instalments = [
        ServicedInstalment(
            **instalment.model_dump(), paid=paid, remaining=remaining, overdue=overdue and owing
        )
        for instalment, paid, remaining, overdue in ledger.rows(today)
    ]
    zero = schedule.principal * 0
    return ServicedSchedule(
        loan_id=loan_id,
        **{**dict(schedule), "instalments": instalments},
        as_of=today,
        outstanding_principal=ledger.outstanding_principal if owing else zero,
        payoff_amount=ledger.payoff_amount(today) if owing else zero,
        days_past_due=ledger.days_past_due(today) if owing else 0,
    )


async def default_loan(
    transaction: Transaction,
    loan_id: uuid.UUID,
    context: ChangeContext,
    today: date,
    **options: Any,
) -> VersionedLoan:
    """Write the loan off, recording the payoff amount of `today` on the event.

    Only a disbursed loan with an instalment past due may be defaulted: `NothingPastDueError`
    otherwise (`TransitionNotAllowedError` for a loan that is not disbursed). A loan without a
    schedule (no term or rate) has no due dates to miss: it may be written off, whole, any time.
    """
    loan = await _locked_loan(transaction, loan_id)
    amount = None
    if loan["status"] is LoanStatus.DISBURSED and (
        loan["term_months"] is None or loan["interest_rate_apr"] is None
    ):
        amount = loan["amount"]
    elif loan["status"] is LoanStatus.DISBURSED:
        ledger = await _ledger(transaction, loan_id, schedule_of(loan))
        if not ledger.days_past_due(today):
            raise NothingPastDueError(loan_id)
        amount = ledger.payoff_amount(today)
    return await transition_loan(
        transaction, loan_id, LoanAction.DEFAULT, context, amount=amount, **options
    )
