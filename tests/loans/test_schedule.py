"""Repayment schedules, computed without the database: known figures and properties."""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchloans.currencies import MINOR_UNITS, minor_unit
from branchloans.loans.models import MAX_AMOUNT, MAX_TERM_MONTHS
from branchloans.loans.schedule import UnpayableAmountError, build_schedule
from branchloans.loans.schemas import RepaymentSchedule

JAN_31 = date(2025, 1, 31)
PROPERTY_SETTINGS = settings(max_examples=250, deadline=None)


@dataclass(frozen=True)
class Terms:
    amount: Decimal
    currency: str
    term_months: int
    apr: Decimal
    start: date

    def schedule(self) -> RepaymentSchedule:
        return build_schedule(self.amount, self.currency, self.term_months, self.apr, self.start)

    @property
    def unit(self) -> Decimal:
        return minor_unit(self.currency)


@st.composite
def loan_terms(draw: st.DrawFn) -> Terms:
    """Any amount a currency can pay, up to the limit; tiny amounts, extreme terms and rates
    are drawn often, since that is where rounding bites."""
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    unit = minor_unit(currency)
    most_units = int(MAX_AMOUNT / unit)
    units = draw(st.one_of(st.integers(1, 200), st.integers(1, most_units)))
    term = draw(st.one_of(st.sampled_from([1, 2, 12, 60, 360]), st.integers(1, MAX_TERM_MONTHS)))
    hundredths = draw(st.one_of(st.sampled_from([0, 1, 10000]), st.integers(0, 10000)))
    start = draw(st.dates(date(2000, 1, 1), date(2100, 12, 31)))
    return Terms(units * unit, currency, term, Decimal(hundredths).scaleb(-2), start)


def half_even(value: Fraction, unit: Decimal) -> Decimal:
    """`value` rounded half-even to `unit`, computed from the exact fraction."""
    units = value / Fraction(unit)
    whole, rest = divmod(units.numerator, units.denominator)
    if 2 * rest > units.denominator or (2 * rest == units.denominator and whole % 2):
        whole += 1
    return Decimal(whole) * unit


def exact_payment(terms: Terms) -> Fraction:
    """The closed-form annuity instalment, as an exact fraction."""
    amount, rate = Fraction(terms.amount), Fraction(terms.apr) / 1200
    if rate == 0:
        return amount / terms.term_months
    growth = (1 + rate) ** terms.term_months
    return amount * rate * growth / (growth - 1)


def figures(schedule: RepaymentSchedule) -> list[Decimal]:
    rows = [
        figure
        for row in schedule.instalments
        for figure in (row.payment, row.principal, row.interest, row.balance)
    ]
    totals = schedule.totals
    return [schedule.principal, schedule.payment, *rows, totals.principal, totals.interest,
            totals.payable]  # fmt: skip


def test_known_schedule_matches_hand_computed_figures() -> None:
    schedule = build_schedule(Decimal("1000.00"), "USD", 12, Decimal("12.00"), JAN_31)

    # r = 0.01; payment = 1000 * 0.01 / (1 - 1.01^-12) = 88.8487887 -> 88.85
    assert schedule.payment == Decimal("88.85")
    first, second, last = schedule.instalments[0], schedule.instalments[1], schedule.instalments[-1]
    assert (first.payment, first.principal, first.interest, first.balance) == (
        Decimal("88.85"), Decimal("78.85"), Decimal("10.00"), Decimal("921.15"),
    )  # fmt: skip
    # 921.15 * 0.01 = 9.2115 -> 9.21
    assert (second.principal, second.interest, second.balance) == (
        Decimal("79.64"), Decimal("9.21"), Decimal("841.51"),
    )  # fmt: skip
    # The last repays the 87.96 left, with 0.8796 -> 0.88 of interest.
    assert (last.number, last.payment, last.principal, last.interest, last.balance) == (
        12, Decimal("88.84"), Decimal("87.96"), Decimal("0.88"), Decimal("0.00"),
    )  # fmt: skip
    assert [row.payment for row in schedule.instalments[:-1]] == [Decimal("88.85")] * 11
    assert (schedule.totals.principal, schedule.totals.interest, schedule.totals.payable) == (
        Decimal("1000.00"), Decimal("66.19"), Decimal("1066.19"),
    )  # fmt: skip


def test_zero_rate_gives_equal_principal_parts_and_no_interest() -> None:
    schedule = build_schedule(Decimal("1000.00"), "USD", 3, Decimal("0"), JAN_31)

    assert schedule.payment == Decimal("333.33")
    assert [row.principal for row in schedule.instalments] == [
        Decimal("333.33"), Decimal("333.33"), Decimal("333.34"),
    ]  # fmt: skip
    assert {row.interest for row in schedule.instalments} == {Decimal("0.00")}
    assert schedule.totals.interest == Decimal("0.00")


def test_one_month_term_repays_the_amount_with_one_month_of_interest() -> None:
    schedule = build_schedule(Decimal("1000.00"), "USD", 1, Decimal("12.00"), JAN_31)

    (only,) = schedule.instalments
    assert (only.payment, only.principal, only.interest, only.balance) == (
        Decimal("1010.00"), Decimal("1000.00"), Decimal("10.00"), Decimal("0.00"),
    )  # fmt: skip
    assert schedule.payment == Decimal("1010.00")


@pytest.mark.parametrize(
    ("amount", "expected_interest"),
    # 6.00 * 1% / 12 = 0.005 and 18.00 * 1% / 12 = 0.015: exact halves go to the even cent.
    [("6.00", "0.00"), ("18.00", "0.02"), ("30.00", "0.02")],
)
@pytest.mark.parametrize("term", [1, 2])
def test_interest_of_exactly_half_a_unit_rounds_to_even(
    amount: str, expected_interest: str, term: int
) -> None:
    schedule = build_schedule(Decimal(amount), "USD", term, Decimal("1.00"), JAN_31)

    assert schedule.instalments[0].interest == Decimal(expected_interest)


@pytest.mark.parametrize(
    ("amount", "expected_payment"),
    # 6.00 * (1 + 1% / 12) = 6.005 and 30.00 * (1 + 1% / 12) = 30.025, exactly.
    [("6.00", "6.00"), ("18.00", "18.02"), ("30.00", "30.02")],
)
def test_regular_payment_of_exactly_half_a_unit_rounds_to_even(
    amount: str, expected_payment: str
) -> None:
    schedule = build_schedule(Decimal(amount), "USD", 1, Decimal("1.00"), JAN_31)

    assert schedule.payment == schedule.instalments[0].payment == Decimal(expected_payment)


def test_zero_decimal_currency_is_scheduled_in_whole_units() -> None:
    # Postgres hands back a VND amount as 35000.00: the schedule writes it without decimals.
    schedule = build_schedule(Decimal("35000.00"), "VND", 12, Decimal("20.00"), JAN_31)

    assert str(schedule.principal) == "35000"
    assert str(schedule.payment) == "3242"
    assert str(schedule.instalments[0].interest) == "583"  # 35000 * 20% / 12 = 583.33
    assert str(schedule.totals.interest) == "3905"


def test_three_decimal_currency_is_scheduled_in_thousandths() -> None:
    schedule = build_schedule(Decimal("1000.00"), "KWD", 12, Decimal("12.00"), JAN_31)

    assert str(schedule.payment) == "88.849"
    assert str(schedule.instalments[0].principal) == "78.849"
    assert str(schedule.instalments[-1].balance) == "0.000"


def test_amount_finer_than_the_currency_is_refused() -> None:
    with pytest.raises(UnpayableAmountError, match="VND"):
        build_schedule(Decimal("100.50"), "VND", 12, Decimal("10"), JAN_31)


def test_currency_without_a_known_minor_unit_is_refused() -> None:
    with pytest.raises(UnpayableAmountError, match="XAU"):
        build_schedule(Decimal("100"), "XAU", 12, Decimal("10"), JAN_31)


@pytest.mark.parametrize(("term", "apr"), [(0, "10"), (-1, "10"), (12, "-0.01")])
def test_term_under_a_month_or_negative_rate_is_refused(term: int, apr: str) -> None:
    with pytest.raises(ValueError, match="term"):
        build_schedule(Decimal("100.00"), "USD", term, Decimal(apr), JAN_31)


def test_instalment_too_small_to_round_to_a_unit_leaves_the_amount_to_the_last() -> None:
    schedule = build_schedule(Decimal("5"), "VND", 24, Decimal("10.00"), JAN_31)

    assert schedule.payment == 0
    assert [row.payment for row in schedule.instalments[:-1]] == [0] * 23
    assert schedule.instalments[-1].payment == 5


def test_instalment_that_would_overshoot_repays_the_balance_and_later_ones_are_zero() -> None:
    # 9 / 6 = 1.5 rounds to 2: four instalments of 2 leave 1 for the fifth, nothing for the sixth.
    schedule = build_schedule(Decimal("9"), "VND", 6, Decimal("0"), JAN_31)

    assert [row.principal for row in schedule.instalments] == [2, 2, 2, 2, 1, 0]
    assert [row.balance for row in schedule.instalments] == [7, 5, 3, 1, 0, 0]


def test_long_term_at_a_high_rate_ends_without_a_balloon() -> None:
    # Equal instalments of 83.33 would repay nothing for 359 months and end on 1083.34.
    schedule = build_schedule(Decimal("1000.01"), "USD", 360, Decimal("100"), JAN_31)

    payments = [row.payment for row in schedule.instalments]
    assert schedule.payment == Decimal("83.33")
    assert all(abs(payment - schedule.payment) <= Decimal("0.10") for payment in payments)
    assert all(abs(payment - schedule.payment) <= Decimal("0.02") for payment in payments[:-1])


def test_long_term_at_a_high_rate_never_ends_on_zero_instalments() -> None:
    schedule = build_schedule(Decimal("37124.770"), "KWD", 360, Decimal("59.41"), JAN_31)

    assert all(row.payment > Decimal("1837") for row in schedule.instalments)


def test_thirty_year_loan_keeps_the_exact_annuity_interest() -> None:
    # Equal instalments of 514.31 (the annuity is 514.3061) would overpay 0.39 cents a month,
    # and compounded over 30 years that would cut the interest by 11.41 instead of 3.60 at most.
    schedule = build_schedule(Decimal("50000.00"), "USD", 360, Decimal("12.00"), JAN_31)

    exact = 360 * exact_payment(Terms(Decimal("50000.00"), "USD", 360, Decimal(12), JAN_31))
    assert abs(Fraction(schedule.totals.interest) - (exact - 50000)) <= Fraction("3.60")


@pytest.mark.parametrize(
    ("start", "due"),
    [
        (date(2024, 1, 31), [date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]),
        (date(2025, 1, 31), [date(2025, 2, 28), date(2025, 3, 31), date(2025, 4, 30)]),
        (date(2025, 11, 15), [date(2025, 12, 15), date(2026, 1, 15), date(2026, 2, 15)]),
        (date(2025, 8, 30), [date(2025, 9, 30), date(2025, 10, 30), date(2025, 11, 30)]),
    ],
)
def test_due_dates_keep_the_day_of_month_clamped_at_month_end(start: date, due: list[date]) -> None:
    schedule = build_schedule(Decimal("300.00"), "USD", 3, Decimal("10"), start)

    assert [row.due_date for row in schedule.instalments] == due
    assert schedule.start_date == start


def test_last_due_date_of_a_thirty_year_term_is_thirty_years_on() -> None:
    schedule = build_schedule(Decimal("300.00"), "USD", 360, Decimal("10"), date(2024, 2, 29))

    assert schedule.instalments[-1].due_date == date(2054, 2, 28)
    assert schedule.instalments[-2].due_date == date(2054, 1, 29)


@PROPERTY_SETTINGS
@given(loan_terms())
def test_principal_parts_sum_to_the_amount_and_the_balance_ends_at_zero(terms: Terms) -> None:
    schedule = terms.schedule()

    assert len(schedule.instalments) == terms.term_months
    assert sum(row.principal for row in schedule.instalments) == terms.amount
    assert schedule.instalments[-1].balance == 0
    assert schedule.totals.principal == terms.amount


@PROPERTY_SETTINGS
@given(loan_terms())
def test_balances_never_rise_and_no_part_is_negative(terms: Terms) -> None:
    schedule = terms.schedule()

    balances = [terms.amount] + [row.balance for row in schedule.instalments]
    assert all(later <= earlier for earlier, later in pairwise(balances))
    assert all(
        row.principal >= 0 and row.interest >= 0 and row.payment >= 0
        for row in schedule.instalments
    )


@PROPERTY_SETTINGS
@given(loan_terms())
def test_each_row_pays_principal_plus_interest_off_the_previous_balance(terms: Terms) -> None:
    schedule = terms.schedule()

    previous = terms.amount
    for row in schedule.instalments:
        assert row.payment == row.principal + row.interest
        assert row.balance == previous - row.principal
        previous = row.balance
    assert schedule.totals.interest == sum(row.interest for row in schedule.instalments)
    assert schedule.totals.payable == schedule.totals.principal + schedule.totals.interest


@PROPERTY_SETTINGS
@given(loan_terms())
def test_every_figure_has_the_currency_decimals(terms: Terms) -> None:
    schedule = terms.schedule()

    exponent = terms.unit.as_tuple().exponent
    for figure in figures(schedule):
        assert figure.as_tuple().exponent == exponent, figure
        assert not figure.is_signed(), figure


@PROPERTY_SETTINGS
@given(loan_terms())
def test_interest_total_is_within_one_unit_per_instalment_of_the_closed_form(
    terms: Terms,
) -> None:
    schedule = terms.schedule()

    closed_form = terms.term_months * exact_payment(terms) - Fraction(terms.amount)
    deviation = abs(Fraction(schedule.totals.interest) - closed_form)
    assert deviation <= terms.term_months * Fraction(terms.unit)


@PROPERTY_SETTINGS
@given(loan_terms())
def test_each_month_interest_is_the_previous_balance_at_the_monthly_rate(terms: Terms) -> None:
    schedule = terms.schedule()

    rate = Fraction(terms.apr) / 1200
    previous = terms.amount
    for row in schedule.instalments:
        assert row.interest == half_even(Fraction(previous) * rate, terms.unit)
        previous = row.balance


@PROPERTY_SETTINGS
@given(loan_terms())
def test_regular_payment_is_the_closed_form_annuity_rounded_half_even(terms: Terms) -> None:
    schedule = terms.schedule()

    assert schedule.payment == half_even(exact_payment(terms), terms.unit)


@PROPERTY_SETTINGS
@given(loan_terms())
def test_instalments_before_the_last_are_the_regular_payment_within_two_units(
    terms: Terms,
) -> None:
    schedule = terms.schedule()

    for row in schedule.instalments[:-1]:
        # Or the loan is already repaid: an instalment that would overshoot repays the rest.
        assert abs(row.payment - schedule.payment) <= 2 * terms.unit or row.balance == 0


@pytest.mark.parametrize(
    ("value", "unit"),
    [("0.005", "0.01"), ("0.015", "0.01"), ("0.0151", "0.01"), ("2.5", "1"), ("3.5", "1"),
     ("-0.005", "0.01"), ("1.0005", "0.001")],
)  # fmt: skip
def test_oracle_rounds_half_even_like_decimal(value: str, unit: str) -> None:
    # The properties above trust this rounding; it must agree with Decimal's own.
    expected = Decimal(value).quantize(Decimal(unit), ROUND_HALF_EVEN)

    assert half_even(Fraction(value), Decimal(unit)) == expected
