"""HTTP metrics at /metrics: route templates, exact statuses, latency, requests in progress."""

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from branchloans.app import create_app
from branchloans.config import AppEnv, Settings
from branchloans.state import app_state
from tests.support import Samples, json_lines, parse_metrics, sample, started_client


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse_metrics(response.text)


def requests_total(samples: Samples, method: str, handler: str, status: str) -> float:
    value = sample(samples, "http_requests_total", method=method, handler=handler, status=status)
    return value or 0.0


async def test_metrics_are_served_as_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE http_requests_total counter" in response.text


async def test_requests_are_counted_by_route_template_and_exact_status(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    for _ in range(2):
        await client.get(f"/api/loans/{uuid.uuid4()}")
    await client.get("/api/loans/not-a-uuid")

    after = await scrape(client)
    handler = "/api/loans/{loan_id}"
    for status, expected in (("404", 2), ("422", 1)):
        assert (
            requests_total(after, "GET", handler, status)
            - requests_total(before, "GET", handler, status)
            == expected
        )
    assert not any("/api/loans/not-a-uuid" in str(labels) for _, labels in after)


async def test_paths_no_route_matches_share_the_handler_none(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    await client.get(f"/scan/{uuid.uuid4()}")
    await client.get(f"/scan/{uuid.uuid4()}.php")

    after = await scrape(client)
    assert (
        requests_total(after, "GET", "none", "404") - requests_total(before, "GET", "none", "404")
        == 2
    )
    assert not any("/scan/" in str(labels) for _, labels in after)


async def test_made_up_methods_share_one_label(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    response = await client.request("BREW", "/api/loans")

    after = await scrape(client)
    assert response.status_code == 405
    assert (
        requests_total(after, "other", "/api/loans", "405")
        - requests_total(before, "other", "/api/loans", "405")
        == 1
    )


async def test_latency_buckets_resolve_one_millisecond_to_ten_seconds(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/liveness")

    samples = await scrape(client)
    bounds = {
        dict(labels)["le"]
        for name, labels in samples
        if name == "http_request_duration_seconds_bucket" and dict(labels)["handler"] == "/liveness"
    }
    assert {float(bound) for bound in bounds} == {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"),
    }  # fmt: skip
    assert (
        sample(samples, "http_request_duration_seconds_count", method="GET", handler="/liveness")
        or 0
    ) >= 1


async def test_requests_in_progress_are_counted_while_they_are_served(
    settings: Settings, connection: AsyncConnection
) -> None:
    app = create_app(settings)
    entered, release = asyncio.Event(), asyncio.Event()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        entered.set()
        await release.wait()
        return {"done": True}

    async with started_client(app, connection) as http:
        pending = asyncio.create_task(http.get("/slow"))
        await asyncio.wait_for(entered.wait(), timeout=5)
        during = await scrape(http)
        release.set()
        assert (await pending).status_code == 200
        after = await scrape(http)

    labels = {"method": "GET", "handler": "/slow"}
    assert sample(during, "http_requests_inprogress", **labels) == 1
    assert sample(after, "http_requests_inprogress", **labels) == 0
    assert requests_total(after, "GET", "/slow", "200") == 1


async def test_disabled_metrics_leave_no_endpoint(
    settings: Settings, connection: AsyncConnection
) -> None:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}))

    async with started_client(app, connection) as http:
        served = await http.get("/liveness")
        metrics = await http.get("/metrics")

    assert served.status_code == 200
    assert metrics.status_code == 404


async def test_metrics_port_alone_answers_metrics(
    settings: Settings, connection: AsyncConnection
) -> None:
    app = create_app(settings.model_copy(update={"metrics_port": 9102}))

    async with started_client(app, connection) as http:
        on_api_port = await http.get("/metrics")
        on_metrics_port = await http.get("http://testserver:9102/metrics")
        api_on_metrics_port = await http.get("http://testserver:9102/liveness")
        api = await http.get("/liveness")

    assert on_api_port.status_code == 404
    assert on_api_port.json()["detail"] == "No resource at /metrics."
    assert on_metrics_port.status_code == 200
    assert "# TYPE http_requests_total counter" in on_metrics_port.text
    assert (api_on_metrics_port.status_code, api.status_code) == (404, 200)


async def test_outside_development_the_api_port_never_answers_metrics(
    settings: Settings, connection: AsyncConnection
) -> None:
    app = create_app(settings.model_copy(update={"app_env": AppEnv.STAGING}))

    async with started_client(app, connection) as http:
        metrics = await http.get("/metrics")

    assert metrics.status_code == 404


async def test_metrics_served_nowhere_are_warned_about_at_startup(
    json_settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(json_settings.model_copy(update={"app_env": AppEnv.STAGING}))

    async with started_client(app, connection):
        pass

    lines = json_lines(capsys.readouterr().out)
    assert {
        "level": "WARNING",
        "message": "metrics are counted but served nowhere: set METRICS_PORT",
    }.items() <= next(line for line in lines if "METRICS_PORT" in line["message"]).items()


async def test_pool_connections_show_size_and_checked_out(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    before = await scrape(client)
    async with app_state(app).database.connection() as held:
        await held.fetchval("SELECT 1")
        during = await scrape(client)

    assert sample(during, "db_pool_connections", state="size") == settings.db_pool_size
    assert sample(during, "db_pool_connections", state="checked_out") == (
        (sample(before, "db_pool_connections", state="checked_out") or 0) + 1
    )
    assert sample(during, "db_pool_connections", state="overflow") == 0


async def test_pool_connections_beyond_the_size_are_overflow(
    settings: Settings, connection: AsyncConnection
) -> None:
    app = create_app(settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 2}))
    async with started_client(app, connection) as http:
        database = app_state(app).database
        async with database.connection() as first, database.connection() as second:
            for held in (first, second):
                await held.fetchval("SELECT 1")
            samples = await scrape(http)

    assert sample(samples, "db_pool_connections", state="size") == 1
    assert sample(samples, "db_pool_connections", state="checked_out") == 2
    assert sample(samples, "db_pool_connections", state="overflow") == 1
