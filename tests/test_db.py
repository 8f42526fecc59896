"""The database plumbing: pooled connections that Postgres closed are never handed out."""

import httpx

from tests.support import terminate_app_connections


async def test_request_after_postgres_closed_the_pooled_connections_succeeds(
    committed_client: httpx.AsyncClient, committed_database_url: str
) -> None:
    assert (await committed_client.get("/api/stats")).status_code == 200
    terminated = await terminate_app_connections(committed_database_url)
    assert terminated >= 1

    responses = [await committed_client.get(path) for path in ("/api/stats", "/api/loans")]

    assert [response.status_code for response in responses] == [200, 200]
