"""Database faults between the API and Postgres: fail fast with 503, recover on their own,
and never lose a write the client was told succeeded."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

from branchloans.migrate import asyncpg_dsn
from tests.reliability.faultproxy import Fault, FaultProxy
from tests.support import make_settings, serving, terminate_app_connections

CONNECT_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 1.0
# The longest a request may take while the database is away: the check of a pooled connection
# that stalled (bounded client-side at the statement timeout plus one second), then an attempt
# to open a new one (the connect timeout), plus scheduling slack.
OUTAGE_ANSWER_BOUND = (STATEMENT_TIMEOUT + 1) + CONNECT_TIMEOUT + 2.0
LOAN = {"borrower_id": "usr_faults", "amount": 100, "currency": "KES"}


@pytest.fixture
async def proxy(committed_database_url: str) -> AsyncIterator[FaultProxy]:
    url = make_url(committed_database_url)
    fault_proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
    await fault_proxy.start()
    yield fault_proxy
    await fault_proxy.stop()


@pytest.fixture
async def client(
    proxy: FaultProxy, committed_database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app that reaches Postgres only through the fault proxy."""
    url = make_url(committed_database_url).set(host="127.0.0.1", port=proxy.port)
    settings = make_settings(
        url.render_as_string(hide_password=False),
        db_connect_timeout=CONNECT_TIMEOUT,
        db_statement_timeout=STATEMENT_TIMEOUT,
        db_pool_timeout=CONNECT_TIMEOUT,
        health_timeout=CONNECT_TIMEOUT,
        idempotency_purge_interval=0,
    )
    async with serving(settings) as http:
        yield http


async def timed(request: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request  # type: ignore[misc]
    return response, time.monotonic() - started


@pytest.mark.parametrize("fault", [Fault.REFUSE, Fault.STALL])
@pytest.mark.parametrize(("method", "path"), [("GET", "/api/loans"), ("POST", "/api/loans")])
async def test_requests_fail_fast_with_503_while_the_database_is_away(
    client: httpx.AsyncClient, proxy: FaultProxy, fault: Fault, method: str, path: str
) -> None:
    assert (await client.get("/api/stats")).status_code == 200  # a pooled connection exists
    proxy.set(fault)
    proxy.cut()

    response, elapsed = await timed(client.request(method, path, json=LOAN))

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert elapsed < OUTAGE_ANSWER_BOUND


async def test_query_on_a_stalled_connection_ends_in_503(
    client: httpx.AsyncClient, proxy: FaultProxy
) -> None:
    assert (await client.get("/api/stats")).status_code == 200
    proxy.set(Fault.STALL)  # the pooled connection stays open, but nothing comes back

    response, elapsed = await timed(client.get("/api/loans"))

    assert response.status_code == 503
    assert elapsed < OUTAGE_ANSWER_BOUND


@pytest.mark.parametrize("probe", ["/health", "/readiness"])
@pytest.mark.parametrize("fault", [Fault.REFUSE, Fault.STALL])
async def test_probes_say_503_while_the_database_is_away(
    client: httpx.AsyncClient, proxy: FaultProxy, probe: str, fault: Fault
) -> None:
    proxy.set(fault)
    proxy.cut()

    response, elapsed = await timed(client.get(probe))

    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "unhealthy"
    assert elapsed < OUTAGE_ANSWER_BOUND


async def test_the_same_process_serves_again_when_the_database_returns(
    client: httpx.AsyncClient, proxy: FaultProxy
) -> None:
    assert (await client.post("/api/loans", json=LOAN)).status_code == 201
    proxy.set(Fault.REFUSE)
    proxy.cut()
    assert (await client.get("/api/loans")).status_code == 503
    assert (await client.get("/readiness")).status_code == 503

    proxy.set(Fault.NONE)

    assert (await client.get("/readiness")).status_code == 200
    assert (await client.get("/api/loans")).status_code == 200
    assert (await client.post("/api/loans", json=LOAN)).status_code == 201


async def test_killed_connections_cost_at_most_the_requests_in_flight(
    client: httpx.AsyncClient, committed_database_url: str
) -> None:
    # As many as the pool holds (10 + 5 overflow): every connection is used, and none waits for
    # one, so a busy machine cannot turn the 1 s pool timeout into a 503.
    in_flight = 15
    first = await asyncio.gather(*(client.get("/api/stats") for _ in range(in_flight)))
    assert {r.status_code for r in first} == {200}

    killed = await terminate_app_connections(committed_database_url)
    during = await asyncio.gather(*(client.get("/api/stats") for _ in range(in_flight)))
    after = await asyncio.gather(*(client.get("/api/stats") for _ in range(in_flight)))

    assert killed > 0
    assert {r.status_code for r in during} <= {200, 503}
    # Pre-ping replaces every connection Postgres closed while it sat in the pool.
    assert {r.status_code for r in after} == {200}


async def test_a_connection_postgres_ended_just_before_its_use_is_replaced_unseen(
    client: httpx.AsyncClient, proxy: FaultProxy, committed_database_url: str
) -> None:
    assert (await client.get("/api/stats")).status_code == 200
    # The app reads Postgres's goodbye on its pooled connection, but not yet the close: the
    # connection looks open, and its next statement is refused before it is sent.
    proxy.set(Fault.HOLD_CLOSE)
    assert await terminate_app_connections(committed_database_url) > 0
    await asyncio.sleep(0.2)
    proxy.set(Fault.NONE)

    response = await client.get("/api/stats")

    assert response.status_code == 200


async def test_a_transaction_on_such_a_connection_is_a_503_and_the_next_succeeds(
    client: httpx.AsyncClient, proxy: FaultProxy, committed_database_url: str
) -> None:
    # A transaction is not sent again elsewhere: its BEGIN fails, the request answers 503.
    approve = f"/api/loans/{uuid.uuid4()}/approve"
    assert (await client.post(approve)).status_code == 404
    proxy.set(Fault.HOLD_CLOSE)
    assert await terminate_app_connections(committed_database_url) > 0
    await asyncio.sleep(0.2)
    proxy.set(Fault.NONE)

    during = await client.post(approve)
    after = await client.post(approve)

    assert during.status_code == 503
    assert after.status_code == 404


async def _loan_ids(database_url: str, borrower_id: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT id::text FROM loans WHERE borrower_id = $1", borrower_id
        )
        return [row[0] for row in rows]
    finally:
        await connection.close()


async def test_every_acknowledged_create_is_kept_and_retries_never_duplicate(
    client: httpx.AsyncClient, proxy: FaultProxy, committed_database_url: str
) -> None:
    borrower = f"usr_ack_{uuid.uuid4().hex[:8]}"
    acknowledged: dict[str, str] = {}
    refused = 0

    async def create_until_acknowledged(key: str) -> None:
        for _ in range(50):
            response = await client.post(
                "/api/loans",
                json={**LOAN, "borrower_id": borrower},
                headers={"Idempotency-Key": key},
            )
            if response.status_code == 201:
                acknowledged[key] = response.json()["id"]
                return
            assert response.status_code == 503
            nonlocal refused
            refused += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key} never succeeded")

    async def cut_repeatedly() -> None:
        for _ in range(10):
            await asyncio.sleep(0.01)
            proxy.cut()

    keys = [f"create-{n}" for n in range(40)]
    await asyncio.gather(cut_repeatedly(), *(create_until_acknowledged(key) for key in keys))

    stored = await _loan_ids(committed_database_url, borrower)
    assert refused > 0, "no request met a cut connection; the test proved nothing"
    assert len(acknowledged) == len(keys)
    assert sorted(stored) == sorted(acknowledged.values())
