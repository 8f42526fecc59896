"""Limits per API key: requests per window, and requests in flight at once."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from branchloans.auth.dependencies import AuthenticatedRoute, requires
from branchloans.auth.models import Scope
from branchloans.auth.quotas import KeyQuotas, TooManyRequestsError
from branchloans.auth.service import KeyCache, authenticate_key
from branchloans.config import Settings
from branchloans.db import Statement
from tests.support import (
    DatabaseInTransaction,
    create_key,
    make_settings,
    serving,
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_ratelimit_fields(
    committed_database_url: str,
) -> None:
    settings = make_settings(
        committed_database_url, auth_required=True, key_rate_limit=3, key_rate_window_seconds=60
    )
    key = await create_key(committed_database_url, Scope.LOANS_READ)

    async with serving(settings) as http:
        allowed = [await http.get("/api/stats", headers=bearer(key)) for _ in range(3)]
        refused = await http.get("/api/stats", headers=bearer(key))

    assert [response.status_code for response in allowed] == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "https://branchloans.com/problems/too-many-requests"
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert refused.headers["ratelimit-policy"] == '"per-key";q=3;w=60'
    assert refused.headers["ratelimit"] == f'"per-key";r=0;t={retry_after}'


async def test_one_key_over_its_rate_leaves_other_keys_alone(
    committed_database_url: str,
) -> None:
    settings = make_settings(committed_database_url, auth_required=True, key_rate_limit=1)
    busy = await create_key(committed_database_url, Scope.LOANS_READ)
    other = await create_key(committed_database_url, Scope.LOANS_READ)

    async with serving(settings) as http:
        await http.get("/api/stats", headers=bearer(busy))
        over = await http.get("/api/stats", headers=bearer(busy))
        response = await http.get("/api/stats", headers=bearer(other))

    assert over.status_code == 429
    assert response.status_code == 200


async def _blocking_route(app: FastAPI, release: asyncio.Event, entered: asyncio.Event) -> None:
    router = APIRouter(route_class=AuthenticatedRoute)

    @router.get("/api/test-slow", dependencies=[Depends(requires(Scope.LOANS_READ))])
    async def slow() -> dict[str, bool]:
        entered.set()
        await release.wait()
        return {"done": True}

    app.include_router(router)


async def test_a_key_over_its_requests_in_flight_gets_429_until_one_finishes(
    committed_database_url: str,
) -> None:
    settings = make_settings(committed_database_url, auth_required=True, key_concurrency_limit=1)
    key = await create_key(committed_database_url, Scope.LOANS_READ)
    other = await create_key(committed_database_url, Scope.LOANS_READ)
    release, entered = asyncio.Event(), asyncio.Event()

    async def install(app: FastAPI) -> None:
        await _blocking_route(app, release, entered)

    async with serving(settings, install=install) as http:
        first = asyncio.create_task(http.get("/api/test-slow", headers=bearer(key)))
        await entered.wait()
        second = await http.get("/api/stats", headers=bearer(key))
        another_key = await http.get("/api/stats", headers=bearer(other))
        release.set()
        finished = await first
        after = await http.get("/api/stats", headers=bearer(key))

    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert another_key.status_code == 200
    assert finished.status_code == 200
    assert after.status_code == 200


class CountingDatabase(DatabaseInTransaction):
    """The test's database, counting the single-row lookups it runs (the key lookups)."""

    lookups: int = 0

    async def fetchrow(self, statement: Statement, **values: Any) -> asyncpg.Record | None:
        self.lookups += 1
        return await super().fetchrow(statement, **values)


async def test_an_unknown_key_id_costs_one_lookup_however_often_it_is_tried(
    database: DatabaseInTransaction,
) -> None:
    counting = CountingDatabase(**vars(database))
    cache = KeyCache(ttl=0, unknown_ttl=30)
    guess = f"blk_{uuid.uuid4().hex[:12]}_{'x' * 43}"

    outcomes = [await authenticate_key(counting, cache, guess) for _ in range(20)]

    assert outcomes == [None] * 20
    assert counting.lookups == 1


async def test_a_keyless_request_is_refused_before_its_body_is_read(
    secured_client: httpx.AsyncClient,
) -> None:
    chunks_read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(100):
            chunks_read += 1
            yield b"x" * 10_000

    response = await secured_client.post(
        "/api/loans", content=body(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401
    assert chunks_read <= 1  # at most what the client sends with the headers


async def test_a_keyless_post_with_a_malformed_body_is_401_not_400(
    secured_client: httpx.AsyncClient,
) -> None:
    response = await secured_client.post(
        "/api/loans", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="branchloans"'


async def test_a_made_up_key_with_a_malformed_body_is_401_not_400(
    secured_client: httpx.AsyncClient,
) -> None:
    response = await secured_client.post(
        "/api/loans",
        content=b"{not json",
        headers={"Content-Type": "application/json", **bearer("blk_000000000000_made-up")},
    )

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_each_worker_enforces_its_share_of_the_instances_rate() -> None:
    quotas = KeyQuotas(
        Settings(_env_file=None, key_rate_limit=4, serve_workers=2, key_concurrency_limit=0)  # type: ignore[call-arg]
    )
    quotas.admit("app")
    quotas.admit("app")

    with pytest.raises(TooManyRequestsError):
        quotas.admit("app")


def test_each_worker_enforces_its_share_of_the_requests_in_flight() -> None:
    quotas = KeyQuotas(
        Settings(_env_file=None, key_rate_limit=0, serve_workers=2, key_concurrency_limit=4)  # type: ignore[call-arg]
    )
    quotas.admit("app")
    quotas.admit("app")

    with pytest.raises(TooManyRequestsError):
        quotas.admit("app")
    quotas.release("app")
    quotas.admit("app")  # a place came free
