"""Helpers for the repayment tests: disbursed loans on a chosen day, and a fixed clock."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from branchloans.loans.dependencies import utc_now

# 1000.00 USD over 3 months at 12%: instalments of 340.02, 340.02 and 340.03 (see the
# schedule example): interest 10.00, 6.70 and 3.37.
LOAN = {
    "borrower_id": "usr_us_7",
    "amount": "1000.00",
    "currency": "USD",
    "term_months": 3,
    "interest_rate_apr": "12.00",
}


@contextmanager
def clock_at(app: FastAPI, moment: datetime) -> Iterator[None]:
    """Make the app's "now" `moment` while the block runs."""

    async def fixed() -> datetime:
        return moment

    app.dependency_overrides[utc_now] = fixed
    try:
        yield
    finally:
        app.dependency_overrides.pop(utc_now, None)


def noon(day: date) -> datetime:
    """Midday UTC of `day`."""
    return datetime.combine(day, time(12), UTC)


async def disbursed_loan(
    client: httpx.AsyncClient,
    connection: AsyncConnection | None = None,
    *,
    on: date | None = None,
    **changes: Any,
) -> str:
    """A new loan, approved and disbursed; with `on`, moved back to have been made that day."""
    response = await client.post("/api/loans", json={**LOAN, **changes})
    assert response.status_code == 201, response.text
    loan_id: str = response.json()["id"]
    for action in ("approve", "disburse"):
        assert (await client.post(f"/api/loans/{loan_id}/{action}")).status_code == 200
    if on is not None:
        assert connection is not None
        await connection.execute(
            text(
                "UPDATE loans SET created_at = :at, updated_at = :at, disbursed_at = :at"
                " WHERE id = :id"
            ),
            {"at": noon(on), "id": loan_id},
        )
    return loan_id


async def pay(client: httpx.AsyncClient, loan_id: str, amount: str, **body: Any) -> httpx.Response:
    """POST a payment of `amount` (and any other fields or headers) on the loan."""
    headers = body.pop("headers", None)
    return await client.post(
        f"/api/loans/{loan_id}/repayments", json={"amount": amount, **body}, headers=headers
    )


def decoded(response: httpx.Response) -> Any:
    """The response's JSON with numbers that have decimals as exact Decimals."""
    return json.loads(response.text, parse_float=Decimal)
