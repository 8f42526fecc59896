"""Portfolio at risk with a fixed clock, and payments made all at once on one loan."""

import asyncio
from datetime import date
from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.loans.servicing_support import clock_at, decoded, disbursed_loan, noon, pay

TODAY = date(2025, 6, 15)
# First instalments due today, 31 and 91 days ago.
DISBURSED = {0: date(2025, 5, 15), 31: date(2025, 4, 15), 91: date(2025, 2, 16)}
MXN = {"currency": "MXN"}


async def _book(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/api/stats")
    assert response.status_code == 200
    book: dict[str, object] = decoded(response)["at_risk_by_currency"]["MXN"]
    return book


async def test_loans_land_in_par_buckets_by_days_overdue(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loans = {
        days: await disbursed_loan(client, connection, on=day, **MXN)
        for days, day in DISBURSED.items()
    }
    with clock_at(app, noon(TODAY)):
        book = await _book(client)
        overdue = {
            days: decoded(await client.get(f"/api/loans/{loan_id}/schedule"))["days_past_due"]
            for days, loan_id in loans.items()
        }

    assert overdue == {0: 0, 31: 31, 91: 91}
    assert book == {
        "outstanding_principal": Decimal("3000.00"),
        "loans": 3,
        "par_30": {"amount": Decimal("2000.00"), "ratio": Decimal("0.6667")},
        "par_90": {"amount": Decimal("1000.00"), "ratio": Decimal("0.3333")},
    }


async def test_a_late_payment_leaves_par_30_once_it_clears_the_overdue_instalment(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    late = await disbursed_loan(client, connection, on=DISBURSED[31], **MXN)
    with clock_at(app, noon(TODAY)):
        assert (await pay(client, late, "340.01")).status_code == 201
        still_late = await _book(client)
        assert (await pay(client, late, "0.01")).status_code == 201
        cleared = await _book(client)

    assert still_late["par_30"] == {"amount": Decimal("669.99"), "ratio": Decimal("1.0000")}
    # Instalment 1 paid; instalment 2 falls due today, which is not overdue.
    assert cleared["par_30"] == {"amount": Decimal("0"), "ratio": Decimal("0.0000")}
    assert cleared["outstanding_principal"] == Decimal("669.98")


async def test_twenty_simultaneous_payments_leave_what_paying_one_by_one_leaves(
    committed_client: httpx.AsyncClient,
) -> None:
    amounts = [f"{10 + n}.{n:02d}" for n in range(20)]
    together = await disbursed_loan(committed_client)
    one_by_one = await disbursed_loan(committed_client)

    answers = await asyncio.gather(*(pay(committed_client, together, a) for a in amounts))
    for amount in amounts:
        assert (await pay(committed_client, one_by_one, amount)).status_code == 201

    assert {answer.status_code for answer in answers} == {201}
    schedules = [
        decoded(await committed_client.get(f"/api/loans/{loan_id}/schedule"))
        for loan_id in (together, one_by_one)
    ]
    for name in ("outstanding_principal", "payoff_amount"):
        assert schedules[0][name] == schedules[1][name]
    assert [(row["paid"], row["remaining"]) for row in schedules[0]["instalments"]] == [
        (row["paid"], row["remaining"]) for row in schedules[1]["instalments"]
    ]
    paid = sum((Decimal(amount) for amount in amounts), Decimal(0))
    assert sum((row["paid"] for row in schedules[0]["instalments"]), Decimal(0)) == paid


async def test_a_payment_replayed_concurrently_with_its_key_is_recorded_once(
    committed_client: httpx.AsyncClient,
) -> None:
    loan_id = await disbursed_loan(committed_client)
    headers = {"Idempotency-Key": "pay-once"}

    answers = await asyncio.gather(
        *(pay(committed_client, loan_id, "50.00", headers=headers) for _ in range(5))
    )

    assert {answer.status_code for answer in answers} <= {201, 409}
    listed = decoded(await committed_client.get(f"/api/loans/{loan_id}/repayments"))
    assert [payment["amount"] for payment in listed] == [Decimal("50.00")]
