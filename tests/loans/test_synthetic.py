"""Synthetic loans are rows the API itself could have written."""

import json
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from branchloans.currencies import MINOR_UNITS
from branchloans.loans.models import MAX_AMOUNT
from branchloans.loans.servicing import Allocated
from branchloans.loans.synthetic import (
    BATCH_SIZE,
    EVENT_COLUMNS,
    LOAN_COLUMNS,
    REPAYMENT_COLUMNS,
    Plan,
    generate_batch,
)

PLAN = Plan(count=3000, seed="test", end=time.time())
PAID_OUT = {"disbursed", "repaid", "defaulted"}


def rows(text: bytes, columns: tuple[str, ...]) -> list[dict[str, str | None]]:
    parsed = []
    for line in text.decode().splitlines():
        values = [None if value == "\\N" else value for value in line.split("\t")]
        parsed.append(dict(zip(columns, values, strict=True)))
    return parsed


@pytest.fixture(scope="module")
def loans() -> list[dict[str, str | None]]:
    return rows(generate_batch(PLAN, 0).loans, LOAN_COLUMNS)


def test_batch_holds_the_planned_number_of_loans_and_one_event_each() -> None:
    batch = generate_batch(PLAN, 0)

    loans, events = rows(batch.loans, LOAN_COLUMNS), rows(batch.events, EVENT_COLUMNS)
    assert batch.size == len(loans) == len(events) == min(PLAN.count, BATCH_SIZE)
    assert [event["loan_id"] for event in events] == [loan["id"] for loan in loans]
    assert all(
        event["to_status"] == loan["status"] and event["occurred_at"] == loan["updated_at"]
        for event, loan in zip(events, loans, strict=True)
    )


def test_amounts_are_in_range_in_whole_minor_units(loans: list[dict[str, str | None]]) -> None:
    for loan in loans:
        amount = Decimal(loan["amount"] or "")
        assert 0 < amount <= MAX_AMOUNT
        assert -amount.as_tuple().exponent == MINOR_UNITS[loan["currency"] or ""]


def test_disbursement_time_is_set_exactly_for_paid_out_loans_and_in_order(
    loans: list[dict[str, str | None]],
) -> None:
    for loan in loans:
        created = datetime.fromisoformat(loan["created_at"] or "")
        updated = datetime.fromisoformat(loan["updated_at"] or "")
        assert created <= updated <= datetime.fromtimestamp(PLAN.end, created.tzinfo)
        if loan["status"] in PAID_OUT:
            assert created <= datetime.fromisoformat(loan["disbursed_at"] or "") <= updated
        else:
            assert loan["disbursed_at"] is None


def test_loans_are_created_oldest_first(loans: list[dict[str, str | None]]) -> None:
    created = [datetime.fromisoformat(loan["created_at"] or "") for loan in loans]

    assert created == sorted(created)


def test_every_status_and_several_currencies_occur(loans: list[dict[str, str | None]]) -> None:
    assert {loan["status"] for loan in loans} == {
        "pending",
        "approved",
        "rejected",
        "disbursed",
        "repaid",
        "defaulted",
    }
    assert len({loan["currency"] for loan in loans}) >= 8


def test_same_plan_gives_the_same_loans_with_fresh_ids() -> None:
    first, again = (rows(generate_batch(PLAN, 0).loans, LOAN_COLUMNS) for _ in range(2))

    assert [loan["id"] for loan in first] != [loan["id"] for loan in again]
    assert [{**loan, "id": None} for loan in first] == [{**loan, "id": None} for loan in again]


def test_ids_are_version_4_uuids(loans: list[dict[str, str | None]]) -> None:
    for loan in loans[:200]:
        assert uuid.UUID(loan["id"] or "").version == 4


def test_payment_histories_allocate_each_payment_whole_and_leave_the_loans_balances() -> None:
    batch = generate_batch(PLAN, 0)  # ids are fresh in each batch generated
    loans = rows(batch.loans, LOAN_COLUMNS)
    payments = rows(batch.repayments, REPAYMENT_COLUMNS)
    by_loan: dict[str | None, list[dict[str, str | None]]] = {}
    for payment in payments:
        by_loan.setdefault(payment["loan_id"], []).append(payment)
        parts = [Allocated.of_json(part) for part in json.loads(payment["allocation"] or "")]
        assert Decimal(payment["amount"] or "") == sum(
            (part.interest + part.principal for part in parts), Decimal(0)
        )
    for loan in loans:
        paid = sum(
            (
                part.principal
                for payment in by_loan.get(loan["id"], [])
                for part in map(Allocated.of_json, json.loads(payment["allocation"] or ""))
            ),
            Decimal(0),
        )
        if loan["outstanding_principal"] is not None:
            assert Decimal(loan["amount"] or "") - paid == Decimal(loan["outstanding_principal"])
        if loan["status"] == "repaid" and loan["outstanding_principal"] is not None:
            assert Decimal(loan["outstanding_principal"]) == 0


def test_loans_being_repaid_are_current_late_and_far_behind(
    loans: list[dict[str, str | None]],
) -> None:
    today = datetime.fromtimestamp(PLAN.end, UTC).date()
    overdue = [
        (today - date.fromisoformat(loan["oldest_unpaid_due"] or "")).days
        for loan in loans
        if loan["status"] == "disbursed" and loan["oldest_unpaid_due"] is not None
    ]

    assert any(days <= 0 for days in overdue)
    assert any(0 < days <= 30 for days in overdue)
    assert any(30 < days <= 90 for days in overdue)
    assert any(days > 90 for days in overdue)
