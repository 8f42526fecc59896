"""Limits per API key: requests per window, and requests in flight at once."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from branchloans.auth.dependencies import AuthenticatedRoute, key_quotas, requires
from branchloans.auth.metrics import key_limit_metrics
from branchloans.auth.models import Scope
from branchloans.auth.quotas import KeyQuotas, TooManyRequestsError
from branchloans.auth.service import KeyCache, authenticate_key
from branchloans.auth.sharing import SharedLimits
from branchloans.config import Settings
from branchloans.db import Statement
from branchloans.state import app_state
from tests.streaming_replica import query
from tests.support import (
    DatabaseInTransaction,
    create_key,
    live_server,
    make_settings,
    parse_metrics,
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
    # A sliding window: this window's requests still count, less and less, in the next one.
    assert 1 <= retry_after <= 2 * 60
    assert refused.headers["ratelimit-policy"] == '"per-key";q=3;w=60'
    assert refused.headers["ratelimit"] == f'"per-key";r=0;t={retry_after}'


async def test_refused_requests_and_syncs_are_counted_in_the_metrics(
    committed_database_url: str,
) -> None:
    settings = make_settings(committed_database_url, auth_required=True, key_rate_limit=1)
    key = await create_key(committed_database_url, Scope.LOANS_READ)

    async with serving(settings) as http:
        await http.get("/api/stats", headers=bearer(key))
        await http.get("/api/stats", headers=bearer(key))
        samples = parse_metrics((await http.get("/metrics")).text)

    assert samples[("key_limit_refusals_total", frozenset({("limit", "rate")}))] == 1
    assert samples[("key_limit_syncs_total", frozenset({("outcome", "ok")}))] >= 1


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


async def test_a_worker_that_never_synced_admits_only_its_first_allowance_of_a_key() -> None:
    quotas = KeyQuotas(
        Settings(_env_file=None, key_rate_limit=600, serve_workers=2, key_concurrency_limit=0)  # type: ignore[call-arg]
    )
    for _ in range(5):
        await quotas.admit("app")

    with pytest.raises(TooManyRequestsError):
        await quotas.admit(
            "app"
        )  # its half of the 10 requests the limit allows in one sync interval


Sync = Callable[[], Awaitable[None]]


@asynccontextmanager
async def _instance(
    settings: Settings, install: Callable[[FastAPI], Awaitable[None]] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Sync]]:
    """A started app (with what `install` adds), a client for it, and a function that syncs
    its per-key limits now."""
    apps: list[FastAPI] = []

    async def keep(app: FastAPI) -> None:
        apps.append(app)
        if install is not None:
            await install(app)

    async with serving(settings, install=keep) as http:
        state = app_state(apps[0])
        yield (
            http,
            SharedLimits(key_quotas(state), state.database, key_limit_metrics(state.metrics)).sync,
        )


def _synced_by_the_test(committed_database_url: str, **limits: object) -> Settings:
    return make_settings(
        committed_database_url,
        auth_required=True,
        key_rate_window_seconds=3600,
        key_limits_sync_seconds=60,  # no sync of its own within the test
        **limits,
    )


async def _until_refused(http: httpx.AsyncClient, key: str) -> list[int]:
    statuses = []
    while not statuses or statuses[-1] == 200:
        statuses.append((await http.get("/api/stats", headers=bearer(key))).status_code)
    return statuses


async def test_a_keys_rate_is_one_limit_across_instances(committed_database_url: str) -> None:
    settings = _synced_by_the_test(committed_database_url, key_rate_limit=4)
    key = await create_key(committed_database_url, Scope.LOANS_READ)

    statuses: list[int] = []
    async with (
        _instance(settings) as (first, sync_first),
        _instance(settings) as (
            second,
            sync_second,
        ),
    ):
        for _ in range(4):  # each instance takes what it may, then both sync
            statuses += await _until_refused(first, key)
            statuses += await _until_refused(second, key)
            await sync_first()
            await sync_second()

    assert statuses.count(200) == 4
    assert set(statuses) == {200, 429}


async def test_a_keys_requests_in_flight_on_one_instance_count_on_another(
    committed_database_url: str,
) -> None:
    settings = _synced_by_the_test(committed_database_url, key_concurrency_limit=1)
    key = await create_key(committed_database_url, Scope.LOANS_READ)
    release, entered = asyncio.Event(), asyncio.Event()

    async def install(app: FastAPI) -> None:
        await _blocking_route(app, release, entered)

    async with (
        _instance(settings, install) as (first, sync_first),
        _instance(settings) as (
            second,
            sync_second,
        ),
    ):
        held = asyncio.create_task(first.get("/api/test-slow", headers=bearer(key)))
        await entered.wait()
        await sync_first()
        await sync_second()
        refused = await second.get("/api/stats", headers=bearer(key))
        release.set()
        await held
        await sync_first()
        await sync_second()
        admitted = await second.get("/api/stats", headers=bearer(key))

    assert refused.status_code == 429
    assert admitted.status_code == 200


def _until_refused_now(http: httpx.Client, key: str) -> list[int]:
    statuses = []
    while not statuses or statuses[-1] == 200:
        statuses.append(http.get("/api/stats", headers=bearer(key)).status_code)
    return statuses


def _until_workers_joined(database_url: str, count: int) -> None:
    for _ in range(300):
        live = query(
            database_url,
            "SELECT count(*) FROM key_limit_workers WHERE seen_at > now() - interval '5 s'",
        )
        if live >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{count} workers did not join")


def test_a_keys_rate_is_one_limit_for_the_workers_of_an_instance(
    committed_database_url: str,
) -> None:
    key = asyncio.run(create_key(committed_database_url, Scope.LOANS_READ))
    env = {
        "DATABASE_URL": committed_database_url,
        "AUTH_REQUIRED": "true",
        "KEY_RATE_LIMIT": "8",
        "KEY_RATE_WINDOW_SECONDS": "3600",
        "KEY_LIMITS_SYNC_SECONDS": "0.05",
    }
    statuses: list[int] = []
    with live_server(env, workers=2) as server, httpx.Client(base_url=server.url) as http:
        _until_workers_joined(committed_database_url, 2)
        # One connection, so one worker: it claims all the other does not hold once synced.
        for _ in range(20):
            statuses += _until_refused_now(http, key)
            time.sleep(0.3)  # several syncs
            if http.get("/api/stats", headers=bearer(key)).status_code == 429:
                break
            statuses.append(200)

    assert statuses.count(200) == 7  # 8, less the other worker's first allowance
