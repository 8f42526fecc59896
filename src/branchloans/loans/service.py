"""What the API does with loans, in SQL."""

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    String,
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.db import Database, DriverStatement, StatementRunner
from branchloans.loans.cursor import Position
from branchloans.loans.lifecycle import TRANSITIONS, LoanAction, allowed_actions
from branchloans.loans.models import Loan, LoanEvent, LoanStatus, LoanTotal
from branchloans.loans.schedule import UnpayableAmountError, build_schedule
from branchloans.loans.schemas import CENT, LoanCreate, LoanSchedule, LoanStats
from branchloans.problems import ProblemError


@dataclass(frozen=True)
class ChangeContext:
    """Who asked for a change and under which request, recorded on the loan's events."""

    request_id: str | None = None
    actor: str | None = None

    @property
    def scope(self) -> str:
        """Whose Idempotency-Keys these are: the actor's, or the anonymous scope."""
        return self.actor or ""


@dataclass(frozen=True)
class LoanFilter:
    """Which loans a listing shows; None means any.

    `created_after` is inclusive and `created_before` exclusive, so consecutive windows
    never share a loan.
    """

    status: LoanStatus | None = None
    currency: str | None = None
    borrower_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


# What the API shows of a loan, in the order LoanRead declares it.
LOAN_COLUMNS = (
    Loan.id,
    Loan.borrower_id,
    Loan.amount,
    Loan.currency,
    Loan.status,
    Loan.term_months,
    Loan.interest_rate_apr,
    Loan.created_at,
    Loan.updated_at,
    Loan.disbursed_at,
)
# A loan as the API shows it, then its version (the ETag).
LoanRow = Mapping[Any, Any]


@dataclass(frozen=True)
class LoanPage:
    """One page of a listing, and where the next one starts when there is one."""

    loans: Sequence[LoanRow]
    next: Position | None


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


class TransitionNotAllowedError(ProblemError):
    """The action does not apply to the loan's current status."""

    def __init__(self, action: LoanAction, current: LoanStatus) -> None:
        allowed = allowed_actions(current)
        super().__init__(
            409,
            f"Cannot {action} a loan that is {current}; "
            + (f"allowed: {', '.join(allowed)}." if allowed else f"{current} is final."),
            slug="transition-not-allowed",
            title="Transition not allowed",
            current_status=current.value,
            allowed_actions=[action.value for action in allowed],
        )


class LoanChangedError(ProblemError):
    """The loan's version is not the one the client's If-Match names."""

    def __init__(self, current_etag: str) -> None:
        super().__init__(
            412,
            f"The loan changed since you read it; its ETag is now {current_etag}.",
            slug="loan-changed",
            title="Loan changed",
            headers={"ETag": current_etag},
        )


def etag(version: int) -> str:
    """The strong entity tag of a loan at `version`."""
    return f'"{version}"'


async def _record_event(
    session: AsyncSession,
    loan_id: uuid.UUID,
    from_status: LoanStatus | None,
    to_status: LoanStatus,
    context: ChangeContext,
    reason: str | None = None,
) -> None:
    await session.execute(
        insert(LoanEvent).values(
            loan_id=loan_id,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            request_id=context.request_id,
            actor=context.actor,
        )
    )


def _create_statement() -> DriverStatement:
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
    return DriverStatement.compile(select(new_loan).add_cte(first_event.cte("first_event")))


_CREATE_LOAN = _create_statement()
_READ_LOAN = DriverStatement.compile(
    select(*LOAN_COLUMNS, Loan.version).where(Loan.id == bindparam("loan_id"))
)


async def create_loan(
    runner: StatementRunner, application: LoanCreate, context: ChangeContext
) -> LoanRow:
    """Store a new pending loan and its first event, in one statement."""
    row: LoanRow | None = await runner.fetchrow(
        _CREATE_LOAN,
        id=uuid.uuid4(),
        **application.model_dump(),
        request_id=context.request_id,
        actor=context.actor,
    )
    assert row is not None
    return row


async def read_loan(database: Database, loan_id: uuid.UUID) -> LoanRow:
    """The loan with this id as the API shows it, with its version; or `LoanNotFoundError`."""
    row: LoanRow | None = await database.fetchrow(_READ_LOAN, loan_id=loan_id)
    if row is None:
        raise LoanNotFoundError(loan_id)
    return row


async def transition_loan(
    session: AsyncSession,
    loan_id: uuid.UUID,
    action: LoanAction,
    context: ChangeContext,
    *,
    reason: str | None = None,
    expected_versions: Collection[int] | None = None,
) -> LoanRow:
    """Apply `action` to the loan and record the event; the caller commits both.

    The row is locked first, so of two concurrent actions the second sees the first's
    result: one succeeds, the other gets `TransitionNotAllowedError`, nothing is lost.
    With `expected_versions` (from If-Match), a loan at any other version raises
    `LoanChangedError` instead.
    """
    current = (
        await session.execute(
            select(Loan.status, Loan.version).where(Loan.id == loan_id).with_for_update()
        )
    ).one_or_none()
    if current is None:
        raise LoanNotFoundError(loan_id)
    status, version = current
    if expected_versions is not None and version not in expected_versions:
        raise LoanChangedError(etag(version))
    transition = TRANSITIONS[action]
    if status not in transition.sources:
        raise TransitionNotAllowedError(action, status)

    # The statement's start: unlike now(), it moves on within a transaction, and unlike
    # clock_timestamp() it is one instant for both columns of a disbursement.
    changed_at = func.statement_timestamp()
    changes = {"status": transition.target, "version": Loan.version + 1, "updated_at": changed_at}
    if transition.target is LoanStatus.DISBURSED:
        changes["disbursed_at"] = changed_at
    result = await session.execute(
        update(Loan)
        .where(Loan.id == loan_id)
        .values(changes)
        .returning(*LOAN_COLUMNS, Loan.version)
    )
    loan = result.mappings().one()
    await _record_event(session, loan_id, status, transition.target, context, reason)
    return loan


async def list_events(session: AsyncSession, loan_id: uuid.UUID) -> Sequence[LoanEvent]:
    """The loan's history, oldest first; `LoanNotFoundError` when there is no such loan."""
    events = (
        await session.scalars(
            select(LoanEvent).where(LoanEvent.loan_id == loan_id).order_by(LoanEvent.id)
        )
    ).all()
    if not events and await session.get(Loan, loan_id) is None:
        raise LoanNotFoundError(loan_id)
    return events


def list_statement(
    where: LoanFilter, *, limit: int, after: Position | None = None
) -> tuple[DriverStatement, dict[str, Any]]:
    """The statement of a page and its values: up to `limit` loans passing `where`, newest
    first, after `after`.

    A keyset page: each filter and the position are conditions on an index whose order is
    the list order, so the page costs the same however deep it is.
    """
    return _list_statement(*_shape(where, after)), _list_values(where, limit, after)


def _shape(where: LoanFilter, after: Position | None) -> tuple[bool, ...]:
    return (
        where.status is not None,
        where.currency is not None,
        where.borrower_id is not None,
        where.created_after is not None,
        where.created_before is not None,
        after is not None,
    )


def _list_values(where: LoanFilter, limit: int, after: Position | None) -> dict[str, Any]:
    values: dict[str, Any] = {**asdict(where), "limit": limit}
    if after is not None:
        values.update(after_created_at=after.created_at, after_id=after.id)
    return values


def _list_shape(
    status: bool,
    currency: bool,
    borrower_id: bool,
    created_after: bool,
    created_before: bool,
    after: bool,
) -> Select[*tuple[Any, ...]]:
    # The values are bound by name at each run.
    query = select(*LOAN_COLUMNS).order_by(Loan.created_at.desc(), Loan.id.desc())
    if status:
        query = query.where(Loan.status == bindparam("status"))
    if currency:
        query = query.where(Loan.currency == bindparam("currency"))
    if borrower_id:
        query = query.where(Loan.borrower_id == bindparam("borrower_id"))
    if created_after:
        query = query.where(Loan.created_at >= bindparam("created_after"))
    if created_before:
        query = query.where(Loan.created_at < bindparam("created_before"))
    if after:
        query = query.where(
            tuple_(Loan.created_at, Loan.id)
            < tuple_(bindparam("after_created_at"), bindparam("after_id"))
        )
    return query.limit(bindparam("limit"))


@cache  # one compiled statement per combination of filters: at most 64
def _list_statement(*shape: bool) -> DriverStatement:
    return DriverStatement.compile(_list_shape(*shape))


async def list_loans(
    database: Database,
    where: LoanFilter,
    *,
    limit: int,
    after: Position | None = None,
) -> LoanPage:
    """Up to `limit` loans that pass the filter, newest first, starting after `after`."""
    # One row more than the page says whether another page follows.
    statement, values = list_statement(where, limit=limit + 1, after=after)
    rows = await database.fetch(statement, **values)
    if len(rows) <= limit:
        return LoanPage(rows, None)
    last = rows[limit - 1]
    return LoanPage(rows[:limit], Position(last["created_at"], last["id"]))


def stats_query() -> Select[*tuple[Any, ...]]:
    """Loans and amounts by status, by currency and overall, from the trigger-kept totals."""
    loans = func.sum(LoanTotal.loans).cast(BigInteger)
    return select(LoanTotal.status, LoanTotal.currency, loans, func.sum(LoanTotal.amount)).group_by(
        text("GROUPING SETS ((status), (currency), ())")
    )


_STATS = DriverStatement.compile(stats_query())


async def get_stats(database: Database) -> LoanStats:
    """Counts and totals over all loans, by status and by currency.

    Read from `loan_totals`, which triggers keep exact as loans change: the cost depends
    on the number of statuses and currencies, never on the number of loans.
    """
    rows = await database.fetch(_STATS)
    by_status = dict.fromkeys(LoanStatus, 0)
    by_currency: dict[str, int] = {}
    amount_by_currency: dict[str, Decimal] = {}
    total_loans, total_amount = 0, Decimal(0)
    for status, currency, count, amount in rows:
        if status is not None:
            by_status[LoanStatus(status)] = count
        elif currency is not None:
            # A currency whose loans were all deleted keeps its (zero) totals rows.
            if count:
                by_currency[currency] = count
                amount_by_currency[currency] = amount
        elif count:
            total_loans, total_amount = count, amount
    average = (total_amount / total_loans) if total_loans else Decimal(0)
    return LoanStats(
        total_loans=total_loans,
        total_amount=total_amount.quantize(CENT),
        avg_amount=average.quantize(CENT, rounding=ROUND_HALF_EVEN),
        by_status=by_status,
        by_currency=dict(sorted(by_currency.items())),
        amount_by_currency=dict(sorted(amount_by_currency.items())),
    )


def schedule_start(loan: LoanRow) -> date:
    """The day (UTC) a loan's instalments are counted from: its disbursement, else its creation."""
    start: datetime = loan["disbursed_at"] or loan["created_at"]
    return start.astimezone(UTC).date()


async def get_schedule(database: Database, loan_id: uuid.UUID) -> LoanSchedule:
    """The repayment schedule of the loan with this id.

    `LoanNotFoundError` when there is no such loan; `ScheduleUnavailableError` when it has no
    term or no rate (the problem's `missing` lists which), or an amount its currency cannot pay
    exactly.
    """
    loan = await read_loan(database, loan_id)
    term, apr = loan["term_months"], loan["interest_rate_apr"]
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
        schedule = build_schedule(loan["amount"], loan["currency"], term, apr, schedule_start(loan))
    except UnpayableAmountError as error:
        raise ScheduleUnavailableError(
            f"Loan {loan_id} cannot be scheduled exactly: {error}."
        ) from error
    return LoanSchedule(loan_id=loan_id, **dict(schedule))


async def count_loans_by_status(session: AsyncSession) -> dict[LoanStatus, int]:
    """Loans per status, every status included, from the counts Postgres keeps: no scan of loans."""
    rows = await session.execute(
        select(LoanTotal.status, func.sum(LoanTotal.loans)).group_by(LoanTotal.status)
    )
    counts = dict.fromkeys(LoanStatus, 0)
    for status, loans in rows:
        counts[LoanStatus(status)] = int(loans)
    return counts
