"""Repayment schedules: equal monthly instalments (an annuity), exact to the minor unit.

Pure arithmetic, no I/O. The conventions:

- The APR is nominal and compounded monthly: the monthly rate r is APR / 100 / 12.
- The regular instalment is the annuity P·r / (1 - (1 + r)^-n) (P / n at a zero rate), rounded
  half-even to the currency's minor unit.
- Each month's interest is the balance times r, rounded half-even; the principal part is the
  instalment less that interest; the last instalment repays whatever balance is left, so the
  principal parts sum to the amount and the balance ends at zero.
- A principal part is never negative (the balance is never above the amount, so its rounded
  interest never exceeds the rounded instalment) nor more than the balance: an instalment that
  would overshoot repays the balance, and any later ones are zero. An amount too small for the
  instalment to reach half a minor unit is repaid whole by the last instalment.

An equal rounded instalment pays up to half a minor unit too much or too little each month,
and over a long term at a high rate that error compounds (by (1 + r)^n): left alone, 1000.01
USD at 100% over 360 months would repay no principal for 359 months and end on a balloon of
1083.34, and some schedules would repay early and end on months of zero. So when the equal
instalments would make the interest total stray more than one minor unit per instalment from
the exact annuity's (n·A - P), the schedule instead tracks the exact annuity: each balance is
kept within half a minor unit's worth of monthly interest (unit / 2r) of the exact annuity's
balance, the principal part moving by the least amount that does it. Every month's interest
then differs from the exact annuity's by at most one unit (half from rounding, half from the
balance), and the instalments differ from the regular one by a unit or two.
"""

import calendar
from collections.abc import Sequence
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext

from branchloans.currencies import MINOR_UNITS, minor_unit
from branchloans.loans.schemas import Instalment, RepaymentSchedule, ScheduleTotals

# Enough digits that (1 + r)^360 and the exact balances lose nothing a minor unit would show.
_PRECISION = 60
# APR is a yearly percentage: the monthly rate is APR / 1200.
_PERCENT_MONTHS = Decimal(1200)


class UnpayableAmountError(ValueError):
    """The amount cannot be paid in its currency: one with no known minor unit, or finer
    than the currency's minor unit."""


def due_date(start: date, months: int) -> date:
    """`months` months after `start`, on its day of the month or the month's last day."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


class _ExactAnnuity:
    """The unrounded annuity that the schedule rounds to the minor unit."""

    def __init__(self, principal: Decimal, apr: Decimal, term: int) -> None:
        self.principal, self.apr, self.term = principal, apr, term
        self.rate = apr / _PERCENT_MONTHS
        if apr == 0:
            self.payment = principal / term
        else:
            # P·r·(1+r)^n / ((1+r)^n - 1) written with (1200 + APR)^n and 1200^n, which are
            # exact for short terms, so a payment that is exactly a half unit rounds as it must.
            grown, base = (_PERCENT_MONTHS + apr) ** term, _PERCENT_MONTHS**term
            self.payment = principal * apr * grown / (_PERCENT_MONTHS * (grown - base))
        self.interest = self.payment * term - principal
        self._growth = 1 + self.rate
        self._grown = self._growth**term

    def balance_after(self, months: int) -> Decimal:
        """What the exact annuity still owes after `months` payments."""
        if self.apr == 0:
            return self.principal * (self.term - months) / self.term
        return self.principal * (self._grown - self._growth**months) / (self._grown - 1)


def _monthly_interest(balance: Decimal, apr: Decimal, unit: Decimal) -> Decimal:
    # The exact product, then one division: an interest of exactly half a unit stays exact,
    # and rounds to even.
    return (balance * apr / _PERCENT_MONTHS).quantize(unit)


def _amortise(
    exact: _ExactAnnuity, payment: Decimal, unit: Decimal, *, tracking: bool
) -> list[tuple[Decimal, Decimal]]:
    """(principal, interest) of each month, paying `payment` and the rest at the end.

    With `tracking`, every balance stays within unit / 2r of the exact annuity's.
    """
    zero = Decimal(0).quantize(unit)
    width = unit / (2 * exact.rate) if tracking else None
    balance = exact.principal
    parts: list[tuple[Decimal, Decimal]] = []
    for month in range(1, exact.term):
        interest = _monthly_interest(balance, exact.apr, unit)
        lowest, highest = zero, balance
        if width is not None:
            target = exact.balance_after(month)
            lowest = max(lowest, (target - width).quantize(unit, ROUND_CEILING))
            highest = min(highest, (target + width).quantize(unit, ROUND_FLOOR))
        remaining = min(max(lowest, balance - (payment - interest)), highest)
        parts.append((balance - remaining, interest))
        balance = remaining
    parts.append((balance, _monthly_interest(balance, exact.apr, unit)))
    return parts


def _total(figures: Sequence[Decimal], unit: Decimal) -> Decimal:
    return sum(figures, Decimal(0).quantize(unit))


def build_schedule(
    amount: Decimal, currency: str, term_months: int, apr: Decimal, start: date
) -> RepaymentSchedule:
    """The schedule of `amount` in `currency` over `term_months` at `apr` percent a year.

    Instalment k falls due k months after `start`. Raises `UnpayableAmountError` when the
    currency has no known minor unit or the amount has more decimals than it, and ValueError
    for a term under one month or a negative rate.
    """
    if term_months < 1 or apr < 0:
        raise ValueError("a schedule needs a term of at least one month and a rate of 0 or more")
    if currency not in MINOR_UNITS:
        raise UnpayableAmountError(f"the currency {currency} has no ISO 4217 minor unit")
    unit = minor_unit(currency)
    principal = amount.quantize(unit, ROUND_HALF_EVEN)
    if principal != amount:
        raise UnpayableAmountError(
            f"the amount {amount} has more decimals than {currency} allows "
            f"({MINOR_UNITS[currency]})"
        )
    with localcontext(prec=_PRECISION, rounding=ROUND_HALF_EVEN):
        exact = _ExactAnnuity(principal, apr, term_months)
        payment = exact.payment.quantize(unit)
        parts = _amortise(exact, payment, unit, tracking=False)
        # Equal instalments, unless their rounding compounds beyond a unit per instalment.
        equal_interest = _total([part[1] for part in parts], unit)
        if abs(equal_interest - exact.interest) > term_months * unit:
            parts = _amortise(exact, payment, unit, tracking=True)
    instalments, balance = [], principal
    for number, (part, month_interest) in enumerate(parts, start=1):
        balance -= part
        instalments.append(
            Instalment(
                number=number,
                due_date=due_date(start, number),
                payment=part + month_interest,
                principal=part,
                interest=month_interest,
                balance=balance,
            )
        )
    interest = _total([row.interest for row in instalments], unit)
    return RepaymentSchedule(
        currency=currency,
        principal=principal,
        term_months=term_months,
        interest_rate_apr=apr,
        start_date=start,
        payment=payment,
        instalments=instalments,
        totals=ScheduleTotals(principal=principal, interest=interest, payable=principal + interest),
    )
