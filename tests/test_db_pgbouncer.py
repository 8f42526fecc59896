"""The API end to end through a real PgBouncer in transaction pooling mode."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from branchloans.migrate import asyncpg_dsn
from tests.support import database_of_its_own, make_settings, serving
from tools.pgbouncer import pgbouncer_in_front_of

LOAN: dict[str, Any] = {
    "borrower_id": "usr_pooled",
    "amount": "2500.00",
    "currency": "KES",
    "term_months": 6,
    "interest_rate_apr": "21.00",
}


@pytest.fixture(scope="module")
def database_urls() -> Iterator[tuple[str, str]]:
    """A migrated database of the module's own: (straight to Postgres, through PgBouncer)."""
    with database_of_its_own("pgbouncer") as direct, pgbouncer_in_front_of(direct) as pooled:
        yield direct, pooled


@pytest.fixture
async def client(database_urls: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The app reaching its database only through PgBouncer, more connections than the
    bouncer has to the server."""
    settings = make_settings(
        database_urls[1], db_transaction_pooler=True, db_pool_size=12, db_max_overflow=4
    )
    async with serving(settings) as http:
        yield http


async def test_a_created_loan_reads_back_through_the_pooler(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/loans", json=LOAN)

    fetched = await client.get(created.headers["location"])

    assert created.status_code == 201
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert Decimal(str(fetched.json()["amount"])) == Decimal("2500.00")


async def test_lifecycle_with_if_match_through_the_pooler(client: httpx.AsyncClient) -> None:
    loan_id = (await client.post("/api/loans", json=LOAN)).json()["id"]

    approved = await client.post(f"/api/loans/{loan_id}/approve", headers={"If-Match": '"1"'})
    stale = await client.post(f"/api/loans/{loan_id}/disburse", headers={"If-Match": '"1"'})
    disbursed = await client.post(f"/api/loans/{loan_id}/disburse", headers={"If-Match": '"2"'})
    events = await client.get(f"/api/loans/{loan_id}/events")

    assert (approved.status_code, approved.headers["etag"]) == (200, '"2"')
    assert (stale.status_code, stale.headers["etag"]) == (412, '"2"')
    assert (disbursed.status_code, disbursed.json()["status"]) == (200, "disbursed")
    assert [event["to_status"] for event in events.json()] == [
        "pending",
        "approved",
        "disbursed",
    ]


async def test_concurrent_retries_through_the_pooler_create_one_loan(
    client: httpx.AsyncClient, database_urls: tuple[str, str]
) -> None:
    key = str(uuid.uuid4())
    borrower = f"usr_{uuid.uuid4().hex[:12]}"
    body = {**LOAN, "borrower_id": borrower}

    responses = await asyncio.gather(
        *(client.post("/api/loans", json=body, headers={"Idempotency-Key": key}) for _ in range(40))
    )

    assert {response.status_code for response in responses} == {201}
    assert len({response.content for response in responses}) == 1
    assert sum("idempotent-replayed" in response.headers for response in responses) == 39
    connection = await asyncpg.connect(asyncpg_dsn(database_urls[0]))
    try:
        stored = await connection.fetchval(
            "SELECT count(*) FROM loans WHERE borrower_id = $1", borrower
        )
    finally:
        await connection.close()
    assert stored == 1


async def test_paging_through_the_pooler_lists_every_loan_once(client: httpx.AsyncClient) -> None:
    borrower = f"usr_{uuid.uuid4().hex[:12]}"
    created = await asyncio.gather(
        *(client.post("/api/loans", json={**LOAN, "borrower_id": borrower}) for _ in range(7))
    )
    url: str | None = f"/api/loans?borrower_id={borrower}&limit=3"
    seen: list[str] = []
    pages = 0
    while url is not None:
        page = await client.get(url)
        assert page.status_code == 200
        seen += [loan["id"] for loan in page.json()]
        pages += 1
        link = page.headers.get("link")
        url = link.split(">", 1)[0].removeprefix("<") if link else None

    assert sorted(seen) == sorted(response.json()["id"] for response in created)
    assert pages == 3
