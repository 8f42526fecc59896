"""The loans API over HTTP, checked against what Postgres holds."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.loans.models import Loan

VALID_LOAN: dict[str, Any] = {
    "borrower_id": "usr_india_123",
    "amount": 15000.00,
    "currency": "INR",
    "term_months": 12,
    "interest_rate_apr": 18.50,
}


def loan_with(**changes: Any) -> dict[str, Any]:
    """The valid loan with some fields changed; a value of `...` removes the field."""
    body = {**VALID_LOAN, **changes}
    return {key: value for key, value in body.items() if value is not ...}


async def post_raw(client: httpx.AsyncClient, body: str) -> httpx.Response:
    return await client.post(
        "/api/loans", content=body, headers={"Content-Type": "application/json"}
    )


async def count_loans(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Loan)) or 0


async def test_create_answers_201_with_the_stored_loan_and_its_location(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post("/api/loans", json=VALID_LOAN)

    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/api/loans/{body['id']}"
    assert body["status"] == "pending"
    assert body["borrower_id"] == "usr_india_123"
    stored = await session.get(Loan, uuid.UUID(body["id"]))
    assert stored is not None
    assert stored.amount == Decimal("15000.00")
    assert stored.interest_rate_apr == Decimal("18.50")
    assert stored.currency == "INR"
    assert stored.term_months == 12


async def test_created_loan_writes_money_as_exact_json_numbers(client: httpx.AsyncClient) -> None:
    response = await post_raw(
        client,
        '{"borrower_id": "b", "amount": 15000.10, "currency": "INR", "interest_rate_apr": 18.5}',
    )

    assert response.status_code == 201
    assert '"amount":15000.10' in response.text
    assert '"interest_rate_apr":18.50' in response.text


async def test_created_loan_timestamps_are_utc_iso8601(client: httpx.AsyncClient) -> None:
    body = (await client.post("/api/loans", json=VALID_LOAN)).json()

    for field in ("created_at", "updated_at"):
        assert body[field].endswith("Z")
        assert datetime.fromisoformat(body[field]).utcoffset() is not None


async def test_amount_sent_as_string_is_accepted_exactly(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post("/api/loans", json=loan_with(amount="0.01"))

    assert response.status_code == 201
    stored = await session.get(Loan, uuid.UUID(response.json()["id"]))
    assert stored is not None
    assert stored.amount == Decimal("0.01")


@pytest.mark.parametrize("amount", ["0.01", "1", "50000", "50000.00", "49999.99", "10.000"])
async def test_amount_inside_limits_is_accepted(client: httpx.AsyncClient, amount: str) -> None:
    response = await post_raw(
        client, f'{{"borrower_id": "b", "amount": {amount}, "currency": "USD"}}'
    )

    assert response.status_code == 201, response.text
    assert Decimal(str(response.json()["amount"])) == Decimal(amount)


@pytest.mark.parametrize(
    "amount",
    ["0", "-1", "50000.01", "50001", "0.001", "1.005", "50000.0000000000000001", "1e400"],
)
async def test_amount_outside_limits_is_refused_and_nothing_stored(
    client: httpx.AsyncClient, session: AsyncSession, amount: str
) -> None:
    response = await post_raw(
        client, f'{{"borrower_id": "b", "amount": {amount}, "currency": "USD"}}'
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == ["amount"]
    assert await count_loans(session) == 0


@pytest.mark.parametrize(
    ("currency", "amount"), [("VND", "100.5"), ("JPY", "0.01"), ("VND", "35000.10")]
)
async def test_amount_with_decimals_in_a_currency_without_them_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, currency: str, amount: str
) -> None:
    response = await post_raw(
        client, f'{{"borrower_id": "b", "amount": {amount}, "currency": "{currency}"}}'
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {
            "field": "amount",
            "location": "body",
            "message": f"amount must be a whole number in {currency}, which has no decimals",
            "type": "too_many_decimals",
        }
    ]
    assert await count_loans(session) == 0


@pytest.mark.parametrize("amount", ["100", "100.0", "100.00", '"35000"'])
async def test_whole_amount_in_a_currency_without_decimals_is_accepted(
    client: httpx.AsyncClient, amount: str
) -> None:
    response = await post_raw(
        client, f'{{"borrower_id": "b", "amount": {amount}, "currency": "VND"}}'
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("amount", ["true", '"abc"', '"NaN"', '"Infinity"', "null", "[]"])
async def test_amount_that_is_not_a_number_is_refused(
    client: httpx.AsyncClient, amount: str
) -> None:
    response = await post_raw(
        client, f'{{"borrower_id": "b", "amount": {amount}, "currency": "USD"}}'
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "amount"


async def test_nan_literal_is_malformed_json(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, '{"borrower_id": "b", "amount": NaN, "currency": "USD"}')

    assert response.status_code == 400
    assert response.json()["title"] == "Malformed JSON"


@pytest.mark.parametrize(("sent", "stored"), [("inr", "INR"), ("Usd", "USD"), ("KES", "KES")])
async def test_currency_is_upper_cased(client: httpx.AsyncClient, sent: str, stored: str) -> None:
    response = await client.post("/api/loans", json=loan_with(currency=sent))

    assert response.status_code == 201
    assert response.json()["currency"] == stored


@pytest.mark.parametrize("currency", ["XQZ", "US", "USDD", "", "123", "XAU", 840])
async def test_currency_that_is_not_iso_4217_is_refused(
    client: httpx.AsyncClient, currency: object
) -> None:
    response = await client.post("/api/loans", json=loan_with(currency=currency))

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "currency"


@pytest.mark.parametrize("term", [1, 12, 360])
async def test_term_inside_limits_is_accepted(client: httpx.AsyncClient, term: int) -> None:
    response = await client.post("/api/loans", json=loan_with(term_months=term))

    assert response.status_code == 201
    assert response.json()["term_months"] == term


@pytest.mark.parametrize("term", [0, -1, 361, 2**40, 1.5, "12", True])
async def test_term_outside_limits_or_not_an_integer_is_refused(
    client: httpx.AsyncClient, term: object
) -> None:
    response = await client.post("/api/loans", json=loan_with(term_months=term))

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "term_months"


@pytest.mark.parametrize("rate", ["0", "0.00", "18.5", "99.99", "100", "100.00"])
async def test_rate_inside_limits_is_accepted(client: httpx.AsyncClient, rate: str) -> None:
    response = await post_raw(
        client,
        f'{{"borrower_id": "b", "amount": 10, "currency": "USD", "interest_rate_apr": {rate}}}',
    )

    assert response.status_code == 201
    assert Decimal(str(response.json()["interest_rate_apr"])) == Decimal(rate)


@pytest.mark.parametrize("rate", ["-0.01", "100.01", "101", "18.555"])
async def test_rate_outside_limits_is_refused(client: httpx.AsyncClient, rate: str) -> None:
    response = await post_raw(
        client,
        f'{{"borrower_id": "b", "amount": 10, "currency": "USD", "interest_rate_apr": {rate}}}',
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "interest_rate_apr"


async def test_term_and_rate_may_be_left_out(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/loans", json=loan_with(term_months=..., interest_rate_apr=...)
    )

    assert response.status_code == 201
    assert response.json()["term_months"] is None
    assert response.json()["interest_rate_apr"] is None


@pytest.mark.parametrize("borrower_id", ["", "   ", "x" * 65, "a\nb", 123])
async def test_bad_borrower_id_is_refused(client: httpx.AsyncClient, borrower_id: object) -> None:
    response = await client.post("/api/loans", json=loan_with(borrower_id=borrower_id))

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "borrower_id"


async def test_borrower_id_of_64_characters_is_accepted_and_trimmed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/loans", json=loan_with(borrower_id=f" {'x' * 64} "))

    assert response.status_code == 201
    assert response.json()["borrower_id"] == "x" * 64


@pytest.mark.parametrize("field", ["borrower_id", "amount", "currency"])
async def test_missing_required_field_is_named(client: httpx.AsyncClient, field: str) -> None:
    response = await client.post("/api/loans", json=loan_with(**{field: ...}))

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error == {
        "field": field,
        "location": "body",
        "message": f"{field} is required",
        "type": "required",
    }


async def test_client_cannot_choose_status_or_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/loans", json=loan_with(status="approved", id=str(uuid.uuid4()))
    )

    assert response.status_code == 422
    assert {error["field"] for error in response.json()["errors"]} == {"status", "id"}


async def test_every_invalid_field_is_reported_at_once(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/loans",
        json={
            "borrower_id": "",
            "amount": 0,
            "currency": "XQZ",
            "term_months": 0,
            "interest_rate_apr": 101,
        },
    )

    problem = response.json()
    assert problem["status"] == 422
    assert problem["type"] == "https://branchloans.com/problems/validation-error"
    assert [error["field"] for error in problem["errors"]] == [
        "borrower_id",
        "amount",
        "currency",
        "term_months",
        "interest_rate_apr",
    ]


async def test_get_returns_the_loan(client: httpx.AsyncClient) -> None:
    created = (await client.post("/api/loans", json=VALID_LOAN)).json()

    response = await client.get(f"/api/loans/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_loan_is_404_problem(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()

    response = await client.get(f"/api/loans/{missing}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Loan not found"
    assert str(missing) in problem["detail"]


async def test_get_malformed_id_is_422_problem_naming_the_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/loans/not-a-uuid")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "loan_id"
    assert response.json()["errors"][0]["location"] == "path"


async def test_list_is_empty_array_without_loans(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/loans")

    assert response.status_code == 200
    assert response.json() == []


async def test_list_shows_newest_first(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/api/loans", json=VALID_LOAN)).json()["id"] for _ in range(3)]

    listed = [loan["id"] for loan in (await client.get("/api/loans")).json()]

    # One transaction gives all three the same created_at; the id then decides, descending.
    assert listed == sorted(ids, reverse=True)


async def test_list_orders_by_creation_time_first(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    older = (await client.post("/api/loans", json=VALID_LOAN)).json()["id"]
    newer = (await client.post("/api/loans", json=VALID_LOAN)).json()["id"]
    loan = await session.get(Loan, uuid.UUID(older))
    assert loan is not None
    loan.created_at = loan.created_at.replace(year=2020)
    loan.updated_at = loan.created_at
    await session.commit()

    listed = [loan["id"] for loan in (await client.get("/api/loans")).json()]

    assert listed == [newer, older]


async def test_stats_without_loans_are_zero_for_every_status(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/stats")

    assert response.status_code == 200
    assert response.json() == {
        "total_loans": 0,
        "total_amount": 0,
        "avg_amount": 0,
        "by_status": dict.fromkeys(
            ["pending", "approved", "rejected", "disbursed", "repaid", "defaulted"], 0
        ),
        "by_currency": {},
        "amount_by_currency": {},
        "at_risk_by_currency": {},
    }


async def test_stats_count_and_sum_by_status_and_currency(client: httpx.AsyncClient) -> None:
    for amount, currency in [("100.00", "INR"), ("200.01", "INR"), ("50.00", "USD")]:
        await post_raw(
            client, f'{{"borrower_id": "b", "amount": {amount}, "currency": "{currency}"}}'
        )

    response = await client.get("/api/stats")

    stats = response.json()
    assert stats["total_loans"] == 3
    assert '"total_amount":350.01' in response.text
    assert '"avg_amount":116.67' in response.text
    assert stats["by_status"]["pending"] == 3
    assert stats["by_status"]["approved"] == 0
    assert stats["by_currency"] == {"INR": 2, "USD": 1}
    assert '"amount_by_currency":{"INR":300.01,"USD":50.00}' in response.text


async def loan_created_at(
    client: httpx.AsyncClient, session: AsyncSession, when: datetime, **changes: Any
) -> str:
    """Apply for the valid loan with `changes`, then backdate its creation to `when`."""
    loan_id = (await client.post("/api/loans", json=loan_with(**changes))).json()["id"]
    loan = await session.get(Loan, uuid.UUID(loan_id))
    assert loan is not None
    loan.created_at = loan.updated_at = when
    await session.commit()
    return loan_id


JAN_31 = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)
THOUSAND_DOLLARS_OVER_A_YEAR: dict[str, Any] = {
    "amount": "1000.00",
    "currency": "USD",
    "term_months": 12,
    "interest_rate_apr": "12.00",
}


async def test_schedule_lists_each_instalment_exactly(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = await loan_created_at(client, session, JAN_31, **THOUSAND_DOLLARS_OVER_A_YEAR)

    response = await client.get(f"/api/loans/{loan_id}/schedule")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["loan_id"] == loan_id
    assert body["start_date"] == "2025-01-31"
    assert len(body["instalments"]) == 12
    # 1000 * 0.01 / (1 - 1.01^-12) = 88.8488 -> 88.85; the last absorbs the rounding.
    assert '"principal":1000.00,"term_months":12,"interest_rate_apr":12.00' in response.text
    assert '"payment":88.85,"instalments"' in response.text
    assert (
        '{"number":1,"due_date":"2025-02-28","payment":88.85,"principal":78.85,'
        '"interest":10.00,"balance":921.15,"paid":0.00,"remaining":88.85,"overdue":false}'
    ) in response.text
    assert (
        '{"number":12,"due_date":"2026-01-31","payment":88.84,"principal":87.96,'
        '"interest":0.88,"balance":0.00,"paid":0.00,"remaining":88.84,"overdue":false}'
    ) in response.text
    assert '"totals":{"principal":1000.00,"interest":66.19,"payable":1066.19}' in response.text


async def test_schedule_due_dates_keep_the_day_clamped_at_month_end(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = await loan_created_at(client, session, JAN_31, **THOUSAND_DOLLARS_OVER_A_YEAR)

    body = (await client.get(f"/api/loans/{loan_id}/schedule")).json()

    assert [row["due_date"] for row in body["instalments"][:4]] == [
        "2025-02-28",
        "2025-03-31",
        "2025-04-30",
        "2025-05-31",
    ]


async def test_schedule_counts_from_the_creation_day_in_utc(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # 23:30 in New York on 31 January is 04:30 UTC on 1 February.
    evening = datetime(2025, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    loan_id = await loan_created_at(client, session, evening, **THOUSAND_DOLLARS_OVER_A_YEAR)

    body = (await client.get(f"/api/loans/{loan_id}/schedule")).json()

    assert body["start_date"] == "2025-02-01"
    assert body["instalments"][0]["due_date"] == "2025-03-01"


async def test_schedule_of_a_currency_without_decimals_has_none(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = await loan_created_at(
        client, session, JAN_31, amount=35000, currency="VND", interest_rate_apr="20"
    )

    response = await client.get(f"/api/loans/{loan_id}/schedule")

    assert '"principal":35000,' in response.text
    assert '"payment":3242,' in response.text
    assert '"totals":{"principal":35000,"interest":3905,"payable":38905}' in response.text
    figures = [
        value for row in response.json()["instalments"] for key, value in row.items()
        if key not in ("number", "due_date")
    ]  # fmt: skip
    assert all(isinstance(figure, int) for figure in figures)


async def test_schedule_of_a_zero_rate_loan_has_no_interest(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = await loan_created_at(
        client, session, JAN_31, amount="1000.00", currency="USD", term_months=3,
        interest_rate_apr=0,
    )  # fmt: skip

    response = await client.get(f"/api/loans/{loan_id}/schedule")

    assert response.status_code == 200
    assert [row["principal"] for row in response.json()["instalments"]] == [
        333.33, 333.33, 333.34,
    ]  # fmt: skip
    assert '"totals":{"principal":1000.00,"interest":0.00,"payable":1000.00}' in response.text


@pytest.mark.parametrize(
    "missing", [["term_months"], ["interest_rate_apr"], ["term_months", "interest_rate_apr"]]
)
async def test_schedule_of_a_loan_without_term_or_rate_is_409_naming_what_is_missing(
    client: httpx.AsyncClient, missing: list[str]
) -> None:
    loan_id = (
        await client.post("/api/loans", json=loan_with(**dict.fromkeys(missing, ...)))
    ).json()["id"]

    response = await client.get(f"/api/loans/{loan_id}/schedule")

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://branchloans.com/problems/schedule-unavailable"
    assert problem["title"] == "Schedule unavailable"
    assert problem["missing"] == missing
    assert all(name in problem["detail"].split(";")[0] for name in missing)
    assert problem["instance"] == f"/api/loans/{loan_id}/schedule"


async def test_schedule_of_a_stored_currency_without_minor_unit_is_409(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # The table accepts any three capitals; gold has no minor unit to round to.
    loan = Loan(
        borrower_id="b", amount=Decimal("10"), currency="XAU", term_months=3,
        interest_rate_apr=Decimal("10"),
    )  # fmt: skip
    session.add(loan)
    await session.commit()

    response = await client.get(f"/api/loans/{loan.id}/schedule")

    assert response.status_code == 409
    assert "XAU" in response.json()["detail"]


async def test_schedule_of_unknown_loan_is_404_problem(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()

    response = await client.get(f"/api/loans/{missing}/schedule")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Loan not found"
    assert str(missing) in response.json()["detail"]


async def test_schedule_of_malformed_id_is_422_problem_naming_the_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/loans/not-a-uuid/schedule")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "loan_id"
