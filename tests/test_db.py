"""The database plumbing: pooled connections that Postgres closed are never handed out."""

import asyncio

import asyncpg
import httpx
from sqlalchemy import make_url


async def test_request_after_postgres_closed_the_pooled_connections_succeeds(
    committed_client: httpx.AsyncClient, committed_database_url: str
) -> None:
    assert (await committed_client.get("/api/stats")).status_code == 200
    dsn = make_url(committed_database_url).set(drivername="postgresql")
    admin = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'branchloans'"
        )
    finally:
        await admin.close()
    assert terminated >= 1
    await asyncio.sleep(0.2)  # the app's event loop sees the sockets close

    responses = [await committed_client.get(path) for path in ("/api/stats", "/api/loans")]

    assert [response.status_code for response in responses] == [200, 200]
