"""Repayments over HTTP: allocation, payoff, refusals, idempotency and the serviced schedule."""

from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.loans.servicing_support import clock_at, decoded, disbursed_loan, noon, pay

START = date(2025, 1, 31)  # instalments due 2025-02-28, 2025-03-31 and 2025-04-30


async def test_a_payment_pays_the_current_interest_then_its_principal(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(date(2025, 2, 10))):
        response = await pay(client, loan_id, "100.00", reference="MPESA-1")

    assert response.status_code == 201
    body = decoded(response)
    assert (body["interest"], body["principal"]) == (Decimal("10.00"), Decimal("90.00"))
    assert body["allocation"] == [
        {"instalment": 1, "interest": Decimal("10.00"), "principal": Decimal("90.00")}
    ]
    assert (body["loan_status"], body["currency"], body["reference"]) == (
        "disbursed",
        "USD",
        "MPESA-1",
    )


async def test_payments_are_listed_oldest_first_with_their_allocation(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(date(2025, 2, 10))):
        await pay(client, loan_id, "340.02")
        await pay(client, loan_id, "10.00")

    listed = decoded(await client.get(f"/api/loans/{loan_id}/repayments"))

    assert [payment["amount"] for payment in listed] == [Decimal("340.02"), Decimal("10.00")]
    # Beyond the current instalment, a payment prepays principal: later interest is not owed.
    assert listed[1]["allocation"] == [
        {"instalment": 2, "interest": Decimal("0.00"), "principal": Decimal("10.00")}
    ]


async def test_overdue_interest_and_principal_come_before_the_current_instalment(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(date(2025, 3, 15))):  # instalment 1 overdue, 2 current
        body = decoded(await pay(client, loan_id, "350.00"))

    assert body["allocation"] == [
        {"instalment": 1, "interest": Decimal("10.00"), "principal": Decimal("330.02")},
        {"instalment": 2, "interest": Decimal("6.70"), "principal": Decimal("3.28")},
    ]


async def test_paying_the_payoff_amount_repays_the_loan(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(date(2025, 2, 10))):
        payoff = decoded(await client.get(f"/api/loans/{loan_id}/schedule"))["payoff_amount"]
        response = await pay(client, loan_id, str(payoff))

    # The principal and the current month's interest; later interest is never charged.
    assert payoff == Decimal("1010.00")
    assert decoded(response)["loan_status"] == "repaid"
    assert decoded(await client.get(f"/api/loans/{loan_id}"))["status"] == "repaid"
    events = decoded(await client.get(f"/api/loans/{loan_id}/events"))
    assert (events[-1]["to_status"], events[-1]["amount"]) == ("repaid", Decimal("1010.00"))


async def test_an_overpayment_is_refused_with_the_payoff_amount(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(date(2025, 2, 10))):
        response = await pay(client, loan_id, "1010.01")

    assert response.status_code == 422
    assert decoded(response)["payoff_amount"] == Decimal("1010.00")
    assert decoded(await client.get(f"/api/loans/{loan_id}/repayments")) == []


async def test_a_payment_on_a_loan_not_disbursed_is_a_conflict(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/loans", json={"borrower_id": "b", "amount": "10.00", "currency": "USD"}
    )

    response = await pay(client, decoded(created)["id"], "1.00")

    assert response.status_code == 409
    assert decoded(response)["current_status"] == "pending"


async def test_a_payment_finer_than_the_minor_unit_is_refused(
    client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection)

    response = await pay(client, loan_id, "1.005")

    assert response.status_code == 422
    assert "at most 2 decimals" in decoded(response)["detail"]


async def test_a_payment_dated_in_the_future_is_refused(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(date(2025, 2, 10))):
        response = await pay(client, loan_id, "1.00", paid_at="2025-02-11T00:00:00Z")

    assert response.status_code == 422


async def test_a_payment_time_beyond_utc_range_is_422_naming_paid_at(
    client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection)

    response = await pay(client, loan_id, "1.00", paid_at="0001-01-01T00:00:00+14:00")

    assert response.status_code == 422
    error = decoded(response)["errors"][0]
    assert (error["field"], error["type"]) == ("paid_at", "out_of_range")


@pytest.mark.parametrize("reference", ["MPESA\x00QX81", "MPESA\u202eQX81", "MPESA\x1bQX81"])
async def test_a_reference_that_cannot_be_stored_is_422_naming_it(
    client: httpx.AsyncClient, connection: AsyncConnection, reference: str
) -> None:
    loan_id = await disbursed_loan(client, connection)

    response = await pay(client, loan_id, "1.00", reference=reference)

    assert response.status_code == 422
    error = decoded(response)["errors"][0]
    assert (error["field"], error["type"]) == ("reference", "invalid_characters")
    assert (await client.get(f"/api/loans/{loan_id}/repayments")).json() == []


async def test_a_replayed_payment_is_recorded_once(
    client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection)
    headers = {"Idempotency-Key": "payment-42"}

    first = await pay(client, loan_id, "25.00", headers=headers)
    replay = await pay(client, loan_id, "25.00", headers=headers)

    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert decoded(replay) == decoded(first)
    assert len(decoded(await client.get(f"/api/loans/{loan_id}/repayments"))) == 1


async def test_the_schedule_shows_what_is_paid_remaining_and_overdue(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(date(2025, 2, 20))):
        await pay(client, loan_id, "100.00")
    with clock_at(app, noon(date(2025, 3, 10))):
        schedule = decoded(await client.get(f"/api/loans/{loan_id}/schedule"))

    first, second, _ = schedule["instalments"]
    assert (first["paid"], first["remaining"], first["overdue"]) == (
        Decimal("100.00"),
        Decimal("240.02"),
        True,
    )
    assert (second["paid"], second["overdue"]) == (Decimal("0.00"), False)
    assert schedule["outstanding_principal"] == Decimal("910.00")
    # 240.02 of instalment 1, the 6.70 interest of the current one, and the other principal.
    assert schedule["payoff_amount"] == Decimal("916.70")
    assert schedule["days_past_due"] == (date(2025, 3, 10) - date(2025, 2, 28)).days


async def test_default_is_refused_while_nothing_is_past_due(
    client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection)

    response = await client.post(f"/api/loans/{loan_id}/default")

    assert response.status_code == 409
    assert decoded(response)["days_past_due"] == 0


async def test_default_of_a_loan_in_arrears_records_the_outstanding_amount(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection, on=START)
    with clock_at(app, noon(START + timedelta(days=45))):
        response = await client.post(f"/api/loans/{loan_id}/default")

    assert decoded(response)["status"] == "defaulted"
    events = decoded(await client.get(f"/api/loans/{loan_id}/events"))
    # All the principal, the overdue interest of instalment 1 and the current one's.
    assert (events[-1]["to_status"], events[-1]["amount"]) == ("defaulted", Decimal("1016.70"))
