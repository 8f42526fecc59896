"""What the API does with one loan, in SQL: create it, read it, change it, read its history."""

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Numeric, String, bindparam, func, insert, select, update

from branchloans.db import Queries, Statement, Transaction
from branchloans.loans.errors import (
    LoanChangedError,
    LoanNotFoundError,
    ScheduleUnavailableError,
    TransitionNotAllowedError,
    etag,
)
from branchloans.loans.lifecycle import TRANSITIONS, LoanAction
from branchloans.loans.models import Loan, LoanEvent, LoanStatus
from branchloans.loans.rows import LOAN_COLUMNS, LoanRow, VersionedLoan
from branchloans.loans.schedule import UnpayableAmountError, build_schedule
from branchloans.loans.schemas import (
    LoanCreate,
    LoanEventRead,
    RepaymentSchedule,
)
from branchloans.observability import tracing


@dataclass(frozen=True)
class ChangeContext:
    """Who asked for a change and under which request, recorded on the loan's events."""

    request_id: str | None = None
    actor: str | None = None

    @property
    def scope(self) -> str:
        """Whose Idempotency-Keys these are: the actor's, or the anonymous scope."""
        return self.actor or ""


def _create_statement() -> Statement:
    # One statement writes the loan and its first event: atomic without a transaction of
    # its own, and one round trip.
    new_loan = (
        insert(Loan)
        .values(
            id=bindparam("id"),
            borrower_id=bindparam("borrower_id"),
            amount=bindparam("amount"),
            currency=bindparam("currency"),
            term_months=bindparam("term_months"),
            interest_rate_apr=bindparam("interest_rate_apr"),
            status=LoanStatus.PENDING.value,
            version=1,
        )
        .returning(*LOAN_COLUMNS, Loan.version)
        .cte("new_loan")
    )
    first_event = insert(LoanEvent).from_select(
        ["loan_id", "to_status", "request_id", "actor"],
        select(
            new_loan.c.id,
            new_loan.c.status,
            bindparam("request_id", type_=String),
            bindparam("actor", type_=String),
        ),
    )
    return Statement.compile(select(new_loan).add_cte(first_event.cte("first_event")))


_CREATE_LOAN = _create_statement()
_READ_LOAN = Statement.compile(
    select(*LOAN_COLUMNS, Loan.version).where(Loan.id == bindparam("loan_id"))
)
_LOCK_LOAN = Statement.compile(
    select(Loan.status, Loan.version).where(Loan.id == bindparam("loan_id")).with_for_update()
)
# The statement's start: unlike now(), it moves on within a transaction, and unlike
# clock_timestamp() it is one instant for both columns of a disbursement.
_CHANGED_AT = func.statement_timestamp()


def _change_statement(disburses: bool) -> Statement:
    changes = {
        "status": bindparam("status"),
        "version": Loan.version + 1,
        "updated_at": _CHANGED_AT,
        **({"disbursed_at": _CHANGED_AT} if disburses else {}),
    }
    changed = (
        update(Loan)
        .where(Loan.id == bindparam("loan_id"))
        .values(changes)
        .returning(*LOAN_COLUMNS, Loan.version)
        .cte("changed")
    )
    event = insert(LoanEvent).from_select(
        ["loan_id", "from_status", "to_status", "reason", "request_id", "actor", "amount"],
        select(
            changed.c.id,
            bindparam("from_status", type_=String),
            changed.c.status,
            bindparam("reason", type_=String),
            bindparam("request_id", type_=String),
            bindparam("actor", type_=String),
            bindparam("amount", type_=Numeric),
        ),
    )
    return Statement.compile(select(changed).add_cte(event.cte("event")))


_CHANGE_LOAN = {disburses: _change_statement(disburses) for disburses in (False, True)}
# The loan's row joined to its events: no row at all means no such loan.
_LIST_EVENTS = Statement.compile(
    select(*LoanEvent.__table__.c)
    .select_from(Loan)
    .outerjoin(LoanEvent, LoanEvent.loan_id == Loan.id)
    .where(Loan.id == bindparam("loan_id"))
    .order_by(LoanEvent.id)
)


async def create_loan(
    queries: Queries, application: LoanCreate, context: ChangeContext
) -> VersionedLoan:
    """Store a new pending loan and its first event, in one statement."""
    loan_id = uuid.uuid4()
    row = await queries.fetchrow(
        _CREATE_LOAN,
        id=loan_id,
        **application.model_dump(),
        request_id=context.request_id,
        actor=context.actor,
    )
    assert row is not None
    tracing.add_event("loan.created", {"loan.id": str(loan_id), "loan.to_status": "pending"})
    return VersionedLoan.of(row)


async def read_loan(queries: Queries, loan_id: uuid.UUID) -> VersionedLoan:
    """The loan with this id as the API shows it, with its version; or `LoanNotFoundError`."""
    row = await queries.fetchrow(_READ_LOAN, loan_id=loan_id)
    if row is None:
        raise LoanNotFoundError(loan_id)
    return VersionedLoan.of(row)


async def transition_loan(
    transaction: Transaction,
    loan_id: uuid.UUID,
    action: LoanAction,
    context: ChangeContext,
    *,
    reason: str | None = None,
    expected_versions: Collection[int] | None = None,
    amount: Decimal | None = None,
) -> VersionedLoan:
    """Apply `action` to the loan and record the event, in the caller's transaction.

    The row is locked first, so of two concurrent actions the second sees the first's
    result: one succeeds, the other gets `TransitionNotAllowedError`, nothing is lost.
    With `expected_versions` (from If-Match), a loan at any other version raises
    `LoanChangedError` instead. `amount` is written on the event (what a default writes off).
    """
    current = await transaction.fetchrow(_LOCK_LOAN, loan_id=loan_id)
    if current is None:
        raise LoanNotFoundError(loan_id)
    status, version = LoanStatus(current["status"]), current["version"]
    if expected_versions is not None and version not in expected_versions:
        raise LoanChangedError(etag(version))
    transition = TRANSITIONS[action]
    if status not in transition.sources:
        raise TransitionNotAllowedError(action, status)
    row = await transaction.fetchrow(
        _CHANGE_LOAN[transition.target is LoanStatus.DISBURSED],
        loan_id=loan_id,
        status=transition.target.value,
        from_status=status.value,
        reason=reason,
        request_id=context.request_id,
        actor=context.actor,
        amount=amount,
    )
    assert row is not None
    tracing.add_event(
        "loan.transition",
        {
            "loan.id": str(loan_id),
            "loan.action": action.value,
            "loan.from_status": status.value,
            "loan.to_status": transition.target.value,
        },
    )
    return VersionedLoan.of(row)


async def list_events(queries: Queries, loan_id: uuid.UUID) -> list[LoanEventRead]:
    """The loan's history, oldest first; `LoanNotFoundError` when there is no such loan."""
    rows = await queries.fetch(_LIST_EVENTS, loan_id=loan_id)
    if not rows:
        raise LoanNotFoundError(loan_id)
    return [LoanEventRead.model_validate(dict(row)) for row in rows if row["id"] is not None]


def schedule_start(loan: LoanRow) -> date:
    """The day (UTC) a loan's instalments are counted from: its disbursement, else its creation."""
    start: datetime = loan["disbursed_at"] or loan["created_at"]
    return start.astimezone(UTC).date()


def schedule_of(loan: LoanRow) -> RepaymentSchedule:
    """The loan's repayment schedule; `ScheduleUnavailableError` when it cannot have one."""
    term, apr = loan["term_months"], loan["interest_rate_apr"]
    if term is None or apr is None:
        missing = [
            name
            for name, value in (("term_months", term), ("interest_rate_apr", apr))
            if value is None
        ]
        raise ScheduleUnavailableError(
            f"Loan {loan['id']} has no {' and no '.join(missing)}; "
            "a schedule needs both term_months and interest_rate_apr.",
            missing=missing,
        )
    try:
        return build_schedule(loan["amount"], loan["currency"], term, apr, schedule_start(loan))
    except UnpayableAmountError as error:
        raise ScheduleUnavailableError(
            f"Loan {loan['id']} cannot be scheduled exactly: {error}."
        ) from error
