"""`branchloans serve --workers 2`, for real: one scrape counts the requests of both workers."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from branchloans.auth.models import Scope
from tests.support import create_key, free_port, parse_metrics, sample

BRANCHLOANS = Path(sys.executable).with_name("branchloans")
STARTUP_SECONDS = 60.0
LOG_SECONDS = 10.0
BATCH = 20
MAX_REQUESTS = 400
POOL_SIZE = 3


class Server:
    """A `branchloans` process whose output is collected line by line as it is written."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        assert BRANCHLOANS.exists(), f"{BRANCHLOANS} is missing: run `make bootstrap`"
        self.process = subprocess.Popen(
            [str(BRANCHLOANS), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so its workers can be stopped too
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        """Every line written so far, parsed: a line that is not JSON fails the test."""
        return [json.loads(line) for line in list(self.lines) if line.strip()]

    def wait_for(self, condition: Callable[[list[dict[str, Any]]], bool], seconds: float) -> None:
        """Poll the log until `condition` holds; fail after `seconds`."""
        deadline = time.monotonic() + seconds
        while not condition(self.records()):
            if self.process.poll() is not None:
                raise AssertionError("server exited:\n" + "\n".join(self.lines))
            if time.monotonic() > deadline:
                raise AssertionError("timed out; output so far:\n" + "\n".join(self.lines))
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, as an orchestrator would; SIGKILL to the group if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)


@contextmanager
def serving(args: list[str], env: dict[str, str]) -> Iterator[Server]:
    server = Server(args, env)
    try:
        yield server
    finally:
        server.stop()


def access_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if record.get("message") == "Request completed"]


def startups(records: list[dict[str, Any]]) -> int:
    return sum(record.get("message") == "Application startup complete." for record in records)


def test_two_workers_count_every_request_exactly_once(
    migrated_database_url: str, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")
    env = {
        **os.environ,
        "DATABASE_URL": migrated_database_url,
        "APP_ENV": "staging",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "METRICS_CACHE_SECONDS": "0",
        "DB_POOL_SIZE": str(POOL_SIZE),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    port, metrics_port = free_port(), free_port()
    env["METRICS_PORT"] = str(metrics_port)
    key = asyncio.run(create_key(migrated_database_url, Scope.LOANS_WRITE))
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    with serving(["serve", "--workers", "2", "--port", str(port)], env) as server:
        server.wait_for(lambda records: startups(records) == 2, STARTUP_SECONDS)
        # A fresh connection per request lets the kernel hand requests to either worker.
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=10,
        ) as http:
            sent: list[str] = []
            workers: set[int] = set()
            while len(workers) < 2 and len(sent) < MAX_REQUESTS:
                for number in range(len(sent), len(sent) + BATCH):
                    request_id = f"two-workers-{number}"
                    response = http.get("/liveness", headers={"X-Request-ID": request_id})
                    assert response.status_code == 200
                    sent.append(request_id)
                server.wait_for(
                    lambda records: len(access_lines(records)) >= len(sent), LOG_SECONDS
                )
                workers = {line["pid"] for line in access_lines(server.records())}
            assert len(workers) == 2, "every request went to one worker"

            scrapes = [parse_metrics(http.get(metrics_url).text) for _ in range(4)]
            for _ in range(3):
                response = http.post(
                    "/api/loans",
                    json={"borrower_id": "b", "amount": "10.00", "currency": "USD"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert response.status_code == 201
            later_scrapes = [parse_metrics(http.get(metrics_url).text) for _ in range(4)]
            on_api_port = http.get("/metrics")

    assert on_api_port.status_code == 404
    liveness = {"method": "GET", "handler": "/liveness"}
    for samples in scrapes:
        assert sample(samples, "http_requests_total", **liveness, status="200") == len(sent)
        assert sample(samples, "http_request_duration_seconds_count", **liveness) == len(sent)
        # The scrape itself is the only request in progress, whichever worker answers it.
        assert sample(samples, "http_requests_inprogress", method="GET", handler="/metrics") == 1
        assert sample(samples, "db_pool_connections", state="size") == 2 * POOL_SIZE
        assert sample(samples, "database_up") == 1
    for samples in later_scrapes:
        assert sample(samples, "loans_created_total", currency="USD") == 3
        assert sample(samples, "loans_by_status", status="pending") == 3

    records = server.records()
    logged_ids = [line["request_id"] for line in access_lines(records)]
    assert all(logged_ids.count(request_id) == 1 for request_id in sent)
    assert len({record["pid"] for record in records}) == 3  # the supervisor and two workers
    assert not any("Exception in ASGI application" in record["message"] for record in records)


def test_one_worker_serves_metrics_too(migrated_database_url: str) -> None:
    # The default `serve` runs the app in the process that prepared the metrics directory.
    env = {**os.environ, "DATABASE_URL": migrated_database_url, "LOG_FORMAT": "json"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()

    with serving(["serve", "--port", str(port)], env) as server:
        server.wait_for(lambda records: startups(records) == 1, STARTUP_SECONDS)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(3):
                assert http.get("/liveness").status_code == 200
            samples = parse_metrics(http.get("/metrics").text)

    assert (
        sample(samples, "http_requests_total", method="GET", handler="/liveness", status="200") == 3
    )
    assert sample(samples, "database_up") == 1


def test_metrics_port_answers_only_metrics_and_the_api_port_never_does(
    migrated_database_url: str,
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": migrated_database_url,
        "APP_ENV": "staging",
        "LOG_FORMAT": "json",
        "METRICS_PORT": str(metrics_port := free_port()),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()

    with serving(["serve", "--port", str(port)], env) as server:
        server.wait_for(lambda records: startups(records) == 1, STARTUP_SECONDS)
        with httpx.Client(timeout=10) as http:
            api = f"http://127.0.0.1:{port}"
            metrics = f"http://127.0.0.1:{metrics_port}"
            statuses = [
                http.get(f"{api}/liveness").status_code,
                http.get(f"{api}/metrics").status_code,
                http.get(f"{metrics}/liveness").status_code,
                http.get(f"{metrics}/api/loans").status_code,
            ]
            scrape = http.get(f"{metrics}/metrics")

    assert statuses == [200, 404, 404, 404]
    assert scrape.status_code == 200
    samples = parse_metrics(scrape.text)
    assert (
        sample(samples, "http_requests_total", method="GET", handler="/liveness", status="200") == 1
    )
    assert sample(samples, "database_up") == 1
