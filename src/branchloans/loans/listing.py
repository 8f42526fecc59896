"""Reading many loans: keyset-paged listings and portfolio statistics."""

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Date, Select, bindparam, func, select, text, tuple_

from branchloans.currencies import in_minor_units
from branchloans.db import Queries, Statement
from branchloans.loans.cursor import Position
from branchloans.loans.fields import CENT
from branchloans.loans.models import Loan, LoanArrears, LoanStatus, LoanTotal
from branchloans.loans.rows import LOAN_COLUMNS, LoanRow, loan_row
from branchloans.loans.schemas import AtRisk, LoanStats, PortfolioAtRisk


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

    def canonical(self) -> bytes:
        """The filters as bytes, the same for every spelling of them (times are UTC by now):
        what a page's cursor is bound to."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class LoanPage:
    """One page of a listing, and where the next one starts when there is one."""

    loans: list[LoanRow]
    next: Position | None


def list_statement(
    where: LoanFilter, *, limit: int, after: Position | None = None
) -> tuple[Statement, dict[str, Any]]:
    """The statement of a page and its values: up to `limit` loans passing `where`, newest
    first, after `after`.

    A keyset page: each filter and the position are conditions on an index whose order is
    the list order, so the page costs the same however deep it is.
    """
    values: dict[str, Any] = {**asdict(where), "limit": limit}
    # Which filters are set, in `_list_shape`'s order (LoanFilter's), and whether `after` is.
    shape = (*(value is not None for value in asdict(where).values()), after is not None)
    if after is not None:
        values.update(after_created_at=after.created_at, after_id=after.id)
    return _list_statement(*shape), values


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
def _list_statement(*shape: bool) -> Statement:
    return Statement.compile(_list_shape(*shape))


async def list_loans(
    queries: Queries, where: LoanFilter, *, limit: int, after: Position | None = None
) -> LoanPage:
    """Up to `limit` loans that pass the filter, newest first, starting after `after`."""
    # One row more than the page says whether another page follows.
    statement, values = list_statement(where, limit=limit + 1, after=after)
    rows = await queries.fetch(statement, **values)
    loans = [loan_row(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return LoanPage(loans, None)
    last = loans[-1]
    return LoanPage(loans, Position(last["created_at"], last["id"]))


def stats_query() -> Select[*tuple[Any, ...]]:
    """Loans and amounts by status, by currency and overall, from the trigger-kept totals."""
    loans = func.sum(LoanTotal.loans).cast(BigInteger)
    return select(LoanTotal.status, LoanTotal.currency, loans, func.sum(LoanTotal.amount)).group_by(
        text("GROUPING SETS ((status), (currency), ())")
    )


_STATS = Statement.compile(stats_query())
# Days an instalment is overdue beyond which its loan counts in each portfolio-at-risk figure.
PAR_DAYS = (30, 90)
_RATIO = Decimal("0.0001")


def arrears_query() -> Select[*tuple[Any, ...]]:
    """Per currency: disbursed loans, their outstanding principal, and the part of it whose
    oldest unpaid instalment fell due before each cut-off day, from the trigger-kept arrears."""
    outstanding = LoanArrears.outstanding_principal
    at_risk = [
        func.coalesce(
            func.sum(outstanding).filter(
                LoanArrears.oldest_unpaid_due < bindparam(f"cutoff_{days}", type_=Date)
            ),
            0,
        )
        for days in PAR_DAYS
    ]
    return (
        select(
            LoanArrears.currency,
            func.sum(LoanArrears.loans).cast(BigInteger),
            func.sum(outstanding),
            *at_risk,
        )
        .group_by(LoanArrears.currency)
        .order_by(LoanArrears.currency)
    )


_ARREARS = Statement.compile(arrears_query())


def _at_risk(amount: Decimal, outstanding: Decimal, currency: str) -> AtRisk:
    ratio = amount / outstanding if outstanding else Decimal(0)
    return AtRisk(
        amount=in_minor_units(amount, currency),
        ratio=ratio.quantize(_RATIO, rounding=ROUND_HALF_EVEN),
    )


async def get_portfolio_at_risk(queries: Queries, today: date) -> dict[str, PortfolioAtRisk]:
    """Per currency with disbursed loans: outstanding principal, PAR30 and PAR90 as of `today`.

    A loan is at risk beyond N days when its oldest unpaid instalment fell due more than N days
    before `today`. Read from `loan_arrears`: one row per currency and due date, whatever the
    number of loans.
    """
    cutoffs = {f"cutoff_{days}": today - timedelta(days=days) for days in PAR_DAYS}
    book: dict[str, PortfolioAtRisk] = {}
    for currency, loans, outstanding, par_30, par_90 in await queries.fetch(_ARREARS, **cutoffs):
        if loans:
            book[currency] = PortfolioAtRisk(
                outstanding_principal=in_minor_units(outstanding, currency),
                loans=loans,
                par_30=_at_risk(par_30, outstanding, currency),
                par_90=_at_risk(par_90, outstanding, currency),
            )
    return book


async def get_stats(queries: Queries, today: date | None = None) -> LoanStats:
    """Counts and totals over all loans, by status and by currency.

    Read from `loan_totals`, which triggers keep exact as loans change: the cost depends
    on the number of statuses and currencies, never on the number of loans.
    """
    rows = await queries.fetch(_STATS)
    by_status = dict.fromkeys(LoanStatus, 0)
    by_currency: dict[str, int] = {}
    amount_by_currency: dict[str, Decimal] = {}
    total_loans = 0
    for status, currency, count, amount in rows:
        if status is not None:
            by_status[LoanStatus(status)] = count
        elif currency is not None:
            # A currency whose loans were all deleted keeps its (zero) totals rows.
            if count:
                by_currency[currency] = count
                amount_by_currency[currency] = in_minor_units(amount, currency)
        elif count:
            total_loans = count
    # Exact, with the most decimals of any currency in it (at least two: 0.00 when empty).
    total_amount = sum(amount_by_currency.values(), Decimal("0.00"))
    average = (total_amount / total_loans) if total_loans else Decimal(0)
    return LoanStats(
        total_loans=total_loans,
        total_amount=total_amount,
        avg_amount=average.quantize(CENT, rounding=ROUND_HALF_EVEN),
        by_status=by_status,
        by_currency=dict(sorted(by_currency.items())),
        amount_by_currency=dict(sorted(amount_by_currency.items())),
        at_risk_by_currency=await get_portfolio_at_risk(queries, today or datetime.now(UTC).date()),
    )
