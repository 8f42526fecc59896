"""Repayment counters, and the loan book figures (outstanding principal, PAR30) at scrape time."""

import json
import re
from decimal import Decimal

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.deploy.support import DASHBOARD_FILE
from tests.loans.servicing_support import disbursed_loan, pay
from tests.support import Samples, make_settings, parse_metrics, sample, serving


async def scrape(client: httpx.AsyncClient) -> Samples:
    return parse_metrics((await client.get("/metrics")).text)


def counted(samples: Samples, name: str) -> float:
    return sample(samples, name, currency="USD") or 0.0


async def test_a_recorded_payment_is_counted_with_its_amount(
    client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection)
    before = await scrape(client)

    assert (await pay(client, loan_id, "12.34")).status_code == 201
    assert (await pay(client, loan_id, "9999.00")).status_code == 422

    after = await scrape(client)
    assert (
        counted(after, "repayments_received_total") - counted(before, "repayments_received_total")
        == 1
    )
    amount = counted(after, "repayments_received_amount_total") - counted(
        before, "repayments_received_amount_total"
    )
    assert Decimal(str(amount)).quantize(Decimal("0.01")) == Decimal("12.34")


async def test_a_replayed_payment_is_counted_once(
    client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    loan_id = await disbursed_loan(client, connection)
    before = await scrape(client)

    for _ in range(2):
        await pay(client, loan_id, "5.00", headers={"Idempotency-Key": "counted-once"})

    after = await scrape(client)
    assert (
        counted(after, "repayments_received_total") - counted(before, "repayments_received_total")
        == 1
    )


async def test_outstanding_principal_and_par30_are_reported_per_currency(
    migrated_database_url: str,
) -> None:
    async with serving(make_settings(migrated_database_url, metrics_cache_seconds=0)) as api:
        loan_id = await disbursed_loan(api)
        assert (await pay(api, loan_id, "110.00")).status_code == 201

        samples = await scrape(api)

    # 10.00 of interest first, then 100.00 of principal.
    assert sample(samples, "loans_outstanding_principal", currency="USD") == 900.0
    assert sample(samples, "loans_par30_ratio", currency="USD") == 0.0
    assert sample(samples, "loans_par30_amount", currency="USD") == 0.0


async def test_the_loan_book_panels_read_metrics_the_api_exposes(
    migrated_database_url: str,
) -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    panels = dashboard["panels"]
    (row,) = [panel for panel in panels if panel["title"] == "Loan book"]
    expressions = [
        target["expr"]
        for panel in panels
        if panel["gridPos"]["y"] > row["gridPos"]["y"]
        for target in panel["targets"]
    ]
    async with serving(make_settings(migrated_database_url, metrics_cache_seconds=0)) as api:
        await pay(api, await disbursed_loan(api), "1.00")
        exposed = {name for name, _ in await scrape(api)}

    used = {re.search(r"\(([a-z_0-9]+)\{", expression)[1] for expression in expressions}  # type: ignore[index]
    assert used == {
        "repayments_received_total",
        "repayments_received_amount_total",
        "loans_par30_ratio",
        "loans_outstanding_principal",
    }
    assert used <= exposed
