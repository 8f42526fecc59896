"""The pool under more requests than connections, with the shipped shape (size + overflow):
every request answered, nothing logged as an error."""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

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


def _error_lines(output: str) -> list[dict[str, Any]]:
    return [
        line
        for line in json_lines(output)
        if str(line.get("level", "")).upper() in {"ERROR", "CRITICAL"}
    ]


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
    assert _error_lines(output) == []
    assert "Traceback" not in output


SHIPPED_CLIENTS = 40
SHIPPED_SECONDS = 10


@pytest.fixture
def shipped_pool_server(migrated_database_url: str) -> Iterator[LiveServer]:
    """`branchloans serve` as shipped: default pool size, overflow and workers."""
    with live_server({"DATABASE_URL": migrated_database_url, "LOG_FORMAT": "json"}) as running:
        yield running


async def _client(http: httpx.AsyncClient, loan_id: str, until: float) -> list[int]:
    statuses = []
    while time.monotonic() < until:
        for response in (
            await http.get(f"/api/loans/{loan_id}"),
            await http.get("/api/loans?limit=20"),
            await http.post("/api/loans", json=LOAN),
        ):
            statuses.append(response.status_code)
    return statuses


async def test_forty_clients_for_ten_seconds_log_no_error_with_the_shipped_pool(
    shipped_pool_server: LiveServer,
) -> None:
    limits = httpx.Limits(max_connections=SHIPPED_CLIENTS)
    async with httpx.AsyncClient(
        base_url=shipped_pool_server.url, timeout=60, limits=limits
    ) as http:
        loan_id = (await http.post("/api/loans", json=LOAN)).json()["id"]
        until = time.monotonic() + SHIPPED_SECONDS
        per_client = await asyncio.gather(
            *(_client(http, loan_id, until) for _ in range(SHIPPED_CLIENTS))
        )

    statuses = [status for statuses in per_client for status in statuses]
    output = shipped_pool_server.output()
    assert statuses
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    assert _error_lines(output) == []
    assert "Traceback" not in output
