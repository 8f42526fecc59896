"""Probes: health reports the database, liveness never does, readiness checks the schema."""

import asyncio
import time

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from branchloans.migrate import upgrade_to_head
from tests.support import make_settings, serving


async def test_health_is_ok_with_every_check_healthy(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["timestamp"].endswith("Z")
    assert body["checks"]["api"]["status"] == "healthy"
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["checks"]["database"]["message"] == "Database connection successful"


async def test_health_reuses_the_database_result_for_at_most_a_second(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/health")
    reused = (await client.get("/health")).json()["checks"]["database"]
    await asyncio.sleep(1.05)
    renewed = (await client.get("/health")).json()["checks"]["database"]

    assert 0 < reused["age_seconds"] < 1
    assert renewed["age_seconds"] == 0


async def test_health_is_503_within_two_seconds_when_database_is_down(
    client_without_database: httpx.AsyncClient,
) -> None:
    started = time.monotonic()
    response = await client_without_database.get("/health")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"]["status"] == "unhealthy"
    assert body["checks"]["api"]["status"] == "healthy"
    assert elapsed < 2.0


async def test_liveness_answers_even_when_database_is_down(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.get("/liveness")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_is_ok_when_schema_is_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readiness")

    assert response.status_code == 200
    assert response.json()["checks"]["database"]["status"] == "healthy"


async def test_readiness_is_503_when_database_was_never_migrated(
    client_with_empty_database: httpx.AsyncClient,
) -> None:
    response = await client_with_empty_database.get("/readiness")

    assert response.status_code == 503
    assert "no revision" in response.json()["checks"]["database"]["message"]


async def test_readiness_is_503_when_database_is_down(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.get("/readiness")

    assert response.status_code == 503


async def _set_revision(database_url: str, revision: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("revision", "ready"), [("9999_from_a_newer_release", True), ("0001", False)]
)
async def test_readiness_accepts_a_newer_schema_but_not_an_older_one(
    empty_database_url: str, revision: str, ready: bool
) -> None:
    await asyncio.to_thread(upgrade_to_head, empty_database_url)
    await _set_revision(empty_database_url, revision)

    async with serving(make_settings(empty_database_url)) as http:
        response = await http.get("/readiness")

    assert (response.status_code == 200) is ready
    assert revision in response.json()["checks"]["database"]["message"]
