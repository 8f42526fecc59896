"""The pool under more requests than connections, with the shipped shape (size + overflow):
every request answered, nothing logged as an error."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.support import LiveServer, json_lines, live_server

LOAN = {"borrower_id": "usr_pool", "amount": "250.00", "currency": "KES"}
CONCURRENT = 8
ROUNDS = 25


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def small_pool_server(
    migrated_database_url: str, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    env = {
        "DATABASE_URL": migrated_database_url,
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "2",
        "LOG_FORMAT": "json",
    }
    with live_server(env, workers=request.param) as running:
        yield running


async def _burst(http: httpx.AsyncClient, loan_id: str) -> list[int]:
    requests = [
        http.get(f"/api/loans/{loan_id}"),
        http.post("/api/loans", json=LOAN),
        http.get("/api/loans?limit=20"),
        http.get("/api/stats"),
    ]
    responses = await asyncio.gather(*(requests * (CONCURRENT // len(requests))))
    return [response.status_code for response in responses]


async def test_overflow_connections_serve_and_close_without_an_error(
    small_pool_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=small_pool_server.url, timeout=30) as http:
        loan_id = (await http.post("/api/loans", json=LOAN)).json()["id"]
        statuses = [status for _ in range(ROUNDS) for status in await _burst(http, loan_id)]

    output = small_pool_server.output()
    assert set(statuses) <= {200, 201}
    assert len(statuses) == ROUNDS * CONCURRENT
    assert [line for line in json_lines(output) if line.get("level") in {"error", "critical"}] == []
    assert "Traceback" not in output
