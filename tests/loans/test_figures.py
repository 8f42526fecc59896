"""loans_by_status and database_up: read from the database when scraped, never scanning loans."""

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from branchloans.app import create_app
from branchloans.config import Settings
from branchloans.loans.models import LoanStatus
from tests.support import Samples, make_settings, parse_metrics, sample, serving, started_client

NEW_LOAN = {"borrower_id": "b", "amount": "100.00", "currency": "USD"}


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse_metrics(response.text)


def by_status(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "loans_by_status"
    }


async def test_every_status_is_reported_including_zeros(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)

    assert set(by_status(samples)) == {status.value for status in LoanStatus}
    assert sample(samples, "database_up") == 1


async def test_a_loan_is_counted_right_after_it_is_created(client: httpx.AsyncClient) -> None:
    before = by_status(await scrape(client))
    assert (await client.post("/api/loans", json=NEW_LOAN)).status_code == 201

    after = by_status(await scrape(client))
    assert after["pending"] == before["pending"] + 1
    assert {status: count for status, count in after.items() if status != "pending"} == {
        status: count for status, count in before.items() if status != "pending"
    }


async def test_loans_by_status_is_right_after_a_restart(migrated_database_url: str) -> None:
    settings = make_settings(migrated_database_url)
    async with serving(settings) as first_run:
        for _ in range(3):
            assert (await first_run.post("/api/loans", json=NEW_LOAN)).status_code == 201

    async with serving(settings) as second_run:
        samples = await scrape(second_run)

    assert by_status(samples)["pending"] == 3
    # The process-local counter started again from nothing; the gauge did not.
    assert sample(samples, "loans_created_total", currency="USD") is None


async def test_a_scrape_does_not_read_the_loans_table(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    async with engine.connect() as other:
        await other.execute(text("LOCK TABLE loans IN ACCESS EXCLUSIVE MODE"))

        samples = await scrape(client)

        await other.rollback()
    assert sample(samples, "database_up") == 1
    assert "pending" in by_status(samples)


async def test_figures_are_reused_within_the_cache_age(
    settings: Settings, connection: AsyncConnection
) -> None:
    app = create_app(settings.model_copy(update={"metrics_cache_seconds": 60}))
    async with started_client(app, connection) as http:
        before = by_status(await scrape(http))
        assert (await http.post("/api/loans", json=NEW_LOAN)).status_code == 201
        cached = by_status(await scrape(http))

    assert cached == before


async def test_figures_are_read_again_once_the_cache_age_passed(
    settings: Settings, connection: AsyncConnection
) -> None:
    app = create_app(settings.model_copy(update={"metrics_cache_seconds": 0.2}))
    async with started_client(app, connection) as http:
        before = by_status(await scrape(http))
        assert (await http.post("/api/loans", json=NEW_LOAN)).status_code == 201
        await asyncio.sleep(0.25)
        fresh = by_status(await scrape(http))

    assert fresh["pending"] == before["pending"] + 1


async def test_metrics_answer_when_the_database_is_down(
    client_without_database: httpx.AsyncClient,
) -> None:
    await client_without_database.get("/liveness")

    samples = await scrape(client_without_database)

    assert sample(samples, "database_up") == 0
    assert by_status(samples) == {}
    assert sample(samples, "http_requests_total", method="GET", handler="/liveness", status="200")
