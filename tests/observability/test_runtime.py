"""What an operator reads first at /metrics: the build, and each worker's process figures."""

import asyncio
import os
import platform
import time

import httpx
import pytest

from branchloans import __version__
from branchloans.config import Settings
from branchloans.observability.runtime import REVISION_ENV_VAR
from tests.support import Samples, parse_metrics, sample, serving

# Longer than the one-second sleep the event loop is timed with, so the sleep falls due inside.
BLOCKING_SECONDS = 1.3


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse_metrics(response.text)


def build_info(samples: Samples) -> dict[str, str]:
    (labels,) = [dict(labels) for name, labels in samples if name == "build_info"]
    assert sample(samples, "build_info", **labels) == 1
    return labels


async def test_build_info_names_the_version_revision_and_python(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REVISION_ENV_VAR, "revision-under-test")

    async with serving(settings) as http:
        samples = await scrape(http)

    assert build_info(samples) == {
        "version": __version__,
        "revision": "revision-under-test",
        "python_version": platform.python_version(),
    }


async def test_build_info_says_unknown_without_a_revision(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REVISION_ENV_VAR, raising=False)

    async with serving(settings) as http:
        samples = await scrape(http)

    assert build_info(samples)["revision"] == "unknown"


async def test_each_process_figure_is_labelled_with_the_workers_pid(
    client: httpx.AsyncClient,
) -> None:
    samples = await scrape(client)
    pid = str(os.getpid())

    def figure(name: str) -> float:
        value = sample(samples, name, worker=pid)
        assert value is not None, name
        return value

    assert figure("process_resident_memory_bytes") > 1_000_000
    assert figure("process_cpu_seconds_total") > 0
    assert 3 <= figure("process_open_fds") <= figure("process_max_fds")
    assert 0 < figure("process_start_time_seconds") <= time.time()


async def test_the_pool_of_each_worker_is_shown_by_pid(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    samples = await scrape(client)
    pid = str(os.getpid())

    assert (
        sample(samples, "db_pool_worker_connections", worker=pid, state="size")
        == settings.db_pool_size
    )
    assert sample(samples, "db_pool_worker_connections", worker=pid, state="overflow") == 0


async def test_a_blocked_event_loop_shows_as_lag(settings: Settings) -> None:
    async with serving(settings) as http:
        # Let the app's refresh task start its one-second sleep, then hold the loop past it.
        await asyncio.sleep(0.05)
        time.sleep(BLOCKING_SECONDS)  # noqa: ASYNC251 (blocking the loop is the point)
        await asyncio.sleep(0)
        samples = await scrape(http)

    lag = sample(samples, "event_loop_lag_seconds", worker=str(os.getpid()))
    assert lag is not None
    assert lag >= BLOCKING_SECONDS - 1
