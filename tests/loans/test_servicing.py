"""Allocation of payments to a schedule: properties over arbitrary schedules and payments."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchloans.currencies import minor_unit
from branchloans.loans.schedule import build_schedule
from branchloans.loans.schemas import RepaymentSchedule
from branchloans.loans.servicing import Allocated, Ledger, OverpaymentError

START = date(2025, 1, 31)


@st.composite
def schedules(draw: st.DrawFn) -> RepaymentSchedule:
    currency = draw(st.sampled_from(["USD", "VND", "KWD"]))
    unit = minor_unit(currency)
    amount = draw(st.integers(min_value=1, max_value=5_000_000)) * unit
    term = draw(st.integers(min_value=1, max_value=36))
    apr = Decimal(draw(st.integers(min_value=0, max_value=10_000))) / 100
    return build_schedule(amount, currency, term, apr, START)


@st.composite
def payments(draw: st.DrawFn, schedule: RepaymentSchedule) -> list[tuple[Decimal, date]]:
    """Payments in recording order: amounts (partial, whole, or large) and days (early, late)."""
    unit = minor_unit(schedule.currency)
    days = draw(
        st.lists(st.integers(min_value=0, max_value=31 * (schedule.term_months + 3)), max_size=12)
    )
    largest = int(schedule.totals.payable / unit) + 1
    return [
        (draw(st.integers(min_value=1, max_value=largest)) * unit, START + timedelta(days=day))
        for day in days
    ]


def _record(ledger: Ledger, amount: Decimal, on: date) -> list[Allocated]:
    # A payment beyond the payoff amount is refused; the tests then pay what is left.
    payoff = ledger.payoff_amount(on)
    if amount > payoff:
        with pytest.raises(OverpaymentError):
            ledger.allocate(amount, on)
        return ledger.allocate(payoff, on) if payoff else []
    return ledger.allocate(amount, on)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_allocations_sum_to_payments_and_never_pay_anything_twice(data: st.DataObject) -> None:
    schedule = data.draw(schedules())
    ledger = Ledger(schedule.instalments)
    paid_in, allocated = Decimal(0), []
    for amount, on in data.draw(payments(schedule)):
        parts = _record(ledger, amount, on)
        paid_in += sum((part.interest + part.principal for part in parts), Decimal(0))
        allocated += parts

    # Nothing allocated twice: no instalment gets more interest or principal than it has.
    for row in schedule.instalments:
        mine = [part for part in allocated if part.instalment == row.number]
        assert sum((part.interest for part in mine), Decimal(0)) <= row.interest
        assert sum((part.principal for part in mine), Decimal(0)) <= row.principal
        assert all(part.interest >= 0 and part.principal >= 0 for part in mine)
    assert sum((p.interest + p.principal for p in allocated), Decimal(0)) == paid_in
    assert 0 <= ledger.outstanding_principal <= schedule.principal
    assert ledger.outstanding_principal == schedule.principal - sum(
        (part.principal for part in allocated), Decimal(0)
    )


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_paying_the_payoff_amount_leaves_exactly_nothing(data: st.DataObject) -> None:
    schedule = data.draw(schedules())
    ledger = Ledger(schedule.instalments)
    for amount, on in data.draw(payments(schedule)):
        _record(ledger, amount, on)
    if not ledger.outstanding_principal:
        return  # already repaid by the payments drawn
    on = START + timedelta(days=data.draw(st.integers(min_value=0, max_value=1200)))

    ledger.allocate(ledger.payoff_amount(on), on)

    assert ledger.outstanding_principal == 0
    assert ledger.payoff_amount(on) == 0


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_ledger_rebuilt_from_its_allocations_owes_the_same(data: st.DataObject) -> None:
    schedule = data.draw(schedules())
    ledger = Ledger(schedule.instalments)
    allocated: list[Allocated] = []
    for amount, on in data.draw(payments(schedule)):
        allocated += _record(ledger, amount, on)

    rebuilt = Ledger(schedule.instalments, [Allocated.of_json(p.as_json()) for p in allocated])

    today = START + timedelta(days=400)
    assert rebuilt.rows(today) == ledger.rows(today)
    assert rebuilt.oldest_unpaid_due == ledger.oldest_unpaid_due


def test_an_overpayment_names_the_payoff_amount() -> None:
    schedule = build_schedule(Decimal("1000.00"), "USD", 3, Decimal("12.00"), START)
    ledger = Ledger(schedule.instalments)

    with pytest.raises(OverpaymentError) as refused:
        ledger.allocate(Decimal("1010.01"), date(2025, 2, 10))

    assert refused.value.payoff == Decimal("1010.00")


def test_days_past_due_count_from_the_oldest_unpaid_instalment() -> None:
    schedule = build_schedule(Decimal("1000.00"), "USD", 3, Decimal("12.00"), START)
    ledger = Ledger(schedule.instalments)
    ledger.allocate(Decimal("340.02"), date(2025, 2, 28))

    assert ledger.days_past_due(date(2025, 3, 31)) == 0
    assert ledger.days_past_due(date(2025, 4, 1)) == 1
    assert ledger.oldest_unpaid_due == date(2025, 3, 31)
