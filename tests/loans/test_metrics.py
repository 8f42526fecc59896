"""Business counters: a loan is counted, with its principal, once it is committed."""

from decimal import Decimal

import httpx
import pytest

from tests.support import Samples, parse_metrics, sample


async def scrape(client: httpx.AsyncClient) -> Samples:
    return parse_metrics((await client.get("/metrics")).text)


def counted(samples: Samples, name: str, currency: str) -> float:
    return sample(samples, name, currency=currency) or 0.0


async def test_a_created_loan_is_counted_with_its_principal(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for amount in ("15000.10", "99.90"):
        response = await client.post(
            "/api/loans", json={"borrower_id": "b", "amount": amount, "currency": "kes"}
        )
        assert response.status_code == 201

    after = await scrape(client)
    created = counted(after, "loans_created_total", "KES") - counted(
        before, "loans_created_total", "KES"
    )
    principal = counted(after, "loans_created_amount_total", "KES") - counted(
        before, "loans_created_amount_total", "KES"
    )
    assert created == 2
    assert Decimal(str(principal)).quantize(Decimal("0.01")) == Decimal("15100.00")


async def test_a_refused_application_is_not_counted(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    response = await client.post(
        "/api/loans", json={"borrower_id": "b", "amount": "50000.01", "currency": "KES"}
    )

    after = await scrape(client)
    assert response.status_code == 422
    assert counted(after, "loans_created_total", "KES") == counted(
        before, "loans_created_total", "KES"
    )


async def test_a_loan_that_could_not_be_stored_is_not_counted(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.post(
        "/api/loans", json={"borrower_id": "b", "amount": "10", "currency": "KES"}
    )

    after = await scrape(client_without_database)
    assert response.status_code == 503
    assert sample(after, "loans_created_total", currency="KES") is None


@pytest.mark.parametrize("name", ["loans_created_total", "loans_created_amount_total"])
async def test_the_business_counters_are_declared(client: httpx.AsyncClient, name: str) -> None:
    text = (await client.get("/metrics")).text

    assert f"# TYPE {name} counter" in text
