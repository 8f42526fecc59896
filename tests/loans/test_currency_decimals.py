"""Money in each currency's own minor unit: 3 decimals for KWD, none for JPY, 4 for CLF.

Amounts are compared as the JSON text the API wrote (`numbers_as_written`), so a trailing
zero gained or lost fails as surely as a wrong digit.
"""

import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from branchloans.currencies import MINOR_UNITS
from branchloans.loans.models import Loan
from tests.loans.servicing_support import disbursed_loan, pay
from tests.support import make_settings, serving

OMANI_LOAN = {"amount": "1000.125", "currency": "OMR", "term_months": 3, "interest_rate_apr": "12"}


def numbers_as_written(response: httpx.Response) -> Any:
    """The response's JSON with every number kept as the exact text the API wrote."""
    return json.loads(response.text, parse_float=str, parse_int=str)


async def post_amount(
    client: httpx.AsyncClient, amount: str, currency: str, borrower: str = "b"
) -> httpx.Response:
    body = f'{{"borrower_id": "{borrower}", "amount": {amount}, "currency": "{currency}"}}'
    return await client.post(
        "/api/loans", content=body, headers={"Content-Type": "application/json"}
    )


def written(minor_units: int, decimals: int) -> str:
    """An amount of `minor_units` smallest units, with exactly `decimals` decimals."""
    if decimals == 0:
        return str(minor_units)
    whole, fraction = divmod(minor_units, 10**decimals)
    return f"{whole}.{fraction:0{decimals}d}"


def amount_in_every_currency() -> st.SearchStrategy[dict[str, str]]:
    """One amount per listed currency, from its smallest unit to the 50,000 ceiling."""
    return st.fixed_dictionaries(
        {
            code: st.integers(1, 50000 * 10**units).map(lambda n, u=units: written(n, u))
            for code, units in sorted(MINOR_UNITS.items())
        }
    )


@settings(
    max_examples=4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(amounts=amount_in_every_currency())
async def test_amounts_in_every_currency_round_trip_exactly_through_post_get_list_and_stats(
    client: httpx.AsyncClient, amounts: dict[str, str]
) -> None:
    borrower = f"roundtrip-{uuid.uuid4()}"
    before = numbers_as_written(await client.get("/api/stats"))["amount_by_currency"]

    ids: dict[str, str] = {}
    for currency, amount in amounts.items():
        created = await post_amount(client, amount, currency, borrower)
        assert created.status_code == 201, created.text
        assert numbers_as_written(created)["amount"] == amount
        ids[currency] = created.json()["id"]
    shown = {
        currency: numbers_as_written(await client.get(f"/api/loans/{loan_id}"))["amount"]
        for currency, loan_id in ids.items()
    }
    listed = numbers_as_written(
        await client.get("/api/loans", params={"borrower_id": borrower, "limit": 1000})
    )
    stats = numbers_as_written(await client.get("/api/stats"))

    assert shown == amounts
    assert {loan["currency"]: loan["amount"] for loan in listed} == amounts
    expected_totals = {
        currency: format(
            Decimal(before.get(currency, "0")) + Decimal(amount), f".{MINOR_UNITS[currency]}f"
        )
        for currency, amount in amounts.items()
    }
    assert {code: stats["amount_by_currency"][code] for code in amounts} == expected_totals
    assert Decimal(stats["total_amount"]) == sum(map(Decimal, stats["amount_by_currency"].values()))
    assert stats["total_amount"] == f"{Decimal(stats['total_amount']):.4f}"  # CLF's 4 decimals


async def test_kuwaiti_amount_with_three_decimals_is_stored_exactly(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await post_amount(client, "1000.125", "KWD")

    assert response.status_code == 201, response.text
    assert numbers_as_written(response)["amount"] == "1000.125"
    stored = await session.scalar(
        text("SELECT amount::text FROM loans WHERE id = :id"), {"id": response.json()["id"]}
    )
    assert stored == "1000.125"


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("1000.5", "JPY", "amount must be a whole number in JPY, which has no decimals"),
        ("1.0001", "KWD", "amount must have at most 3 decimals in KWD"),
        ("1.001", "USD", "amount must have at most 2 decimals in USD"),
        ("1.00001", "CLF", "amount must have at most 4 decimals in CLF"),
    ],
)
async def test_more_decimals_than_the_currency_has_is_refused_naming_amount(
    client: httpx.AsyncClient, amount: str, currency: str, message: str
) -> None:
    before = (await client.get("/api/stats")).json()["total_loans"]

    response = await post_amount(client, amount, currency)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [(error["field"], error["message"]) for error in response.json()["errors"]] == [
        ("amount", message)
    ]
    assert (await client.get("/api/stats")).json()["total_loans"] == before


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [("1000.1", "KWD", "1000.100"), ("100.00", "JPY", "100"), ("10.000", "USD", "10.00")],
)
async def test_an_amount_is_stored_and_shown_with_its_currency_decimals(
    client: httpx.AsyncClient, session: AsyncSession, amount: str, currency: str, shown: str
) -> None:
    response = await post_amount(client, amount, currency)

    assert numbers_as_written(response)["amount"] == shown
    stored = await session.scalar(
        text("SELECT amount::text FROM loans WHERE id = :id"), {"id": response.json()["id"]}
    )
    assert stored == shown


async def test_a_whole_yen_amount_stored_with_two_zero_decimals_is_shown_without_them(
    client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    # As NUMERIC(12, 2) held every amount before revision 0010.
    loan_id = uuid.uuid4()
    await connection.execute(
        text(
            "INSERT INTO loans (id, borrower_id, amount, currency)"
            " VALUES (:id, 'b', 1000.00, 'JPY')"
        ),
        {"id": loan_id},
    )

    response = await client.get(f"/api/loans/{loan_id}")

    assert numbers_as_written(response)["amount"] == "1000"


@pytest.mark.parametrize(
    ("amount", "currency"), [("100.50", "VND"), ("1.0005", "BHD"), ("7.001", "INR")]
)
async def test_the_database_refuses_an_amount_finer_than_its_currency_from_any_writer(
    session: AsyncSession, amount: str, currency: str
) -> None:
    session.add(Loan(borrower_id="b", amount=Decimal(amount), currency=currency))

    with pytest.raises(IntegrityError, match="ck_loans_amount_in_minor_units"):
        await session.commit()


async def test_a_disbursed_omani_loan_keeps_its_baisa_in_its_schedule_and_stats(
    client: httpx.AsyncClient,
) -> None:
    loan_id = await disbursed_loan(client, **OMANI_LOAN)

    schedule = numbers_as_written(await client.get(f"/api/loans/{loan_id}/schedule"))
    book = numbers_as_written(await client.get("/api/stats"))["at_risk_by_currency"]["OMR"]

    assert schedule["principal"] == schedule["totals"]["principal"] == "1000.125"
    # Interest at 1% a month, to the baisa: 10.001, 6.701 (on 670.061), 3.367 (on 336.697).
    assert [row["payment"] for row in schedule["instalments"]] == ["340.065", "340.065", "340.064"]
    assert [row["interest"] for row in schedule["instalments"]] == ["10.001", "6.701", "3.367"]
    assert schedule["totals"]["interest"] == "20.069"
    assert book["outstanding_principal"] == "1000.125"


async def test_an_omani_payment_is_recorded_and_listed_to_the_baisa(
    client: httpx.AsyncClient,
) -> None:
    loan_id = await disbursed_loan(client, **OMANI_LOAN)

    recorded = numbers_as_written(await pay(client, loan_id, "20.5"))
    (listed,) = numbers_as_written(await client.get(f"/api/loans/{loan_id}/repayments"))

    # The month's interest (10.001) first, then principal.
    paid = {"amount": "20.500", "interest": "10.001", "principal": "10.499"}
    assert {name: recorded[name] for name in paid} == paid
    assert {name: listed[name] for name in paid} == paid


async def test_the_metrics_show_an_omani_amount_to_the_baisa(migrated_database_url: str) -> None:
    async with serving(make_settings(migrated_database_url, metrics_cache_seconds=0)) as api:
        await disbursed_loan(api, **OMANI_LOAN)
        metrics = (await api.get("/metrics")).text

    assert 'loans_outstanding_principal{currency="OMR"} 1000.125' in metrics


async def test_the_openapi_document_states_each_currencys_decimals(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    rules = document["components"]["schemas"]["LoanCreate"]["allOf"]

    stated = {
        code: Decimal(str(rule["then"]["properties"]["amount"]["multipleOf"]))
        for rule in rules
        for code in rule["if"]["properties"]["currency"]["enum"]
    }
    assert stated == {code: Decimal(1).scaleb(-units) for code, units in MINOR_UNITS.items()}


def test_the_api_guide_lists_the_currencies_without_two_decimals() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    rows = dict(re.findall(r"^\| ([034]) \| ((?:`[A-Z]{3}`(?:, )?)+) \|$", guide, re.MULTILINE))

    listed = {
        code: int(units) for units, codes in rows.items() for code in re.findall(r"[A-Z]{3}", codes)
    }
    assert listed == {code: units for code, units in MINOR_UNITS.items() if units != 2}
