"""SIGTERM under load, many times over: every worker exits within the grace period, even when
the signal lands while it writes a log line; no connection is reset; every 201 is a row."""

import asyncio
import os
import signal
import threading
import time
from collections import Counter

import asyncpg
import httpx
import pytest

from branchloans.migrate import asyncpg_dsn
from tests.support import live_server

# Each run starts a server; a deeper run: SHUTDOWN_RUNS=10 uv run pytest <this file>
RUNS = int(os.environ.get("SHUTDOWN_RUNS", "3"))
DRAIN_SECONDS = 0.3
GRACE_SECONDS = 5
# Drain, the moment new handshakes settle, the grace period, and the pool closing.
EXIT_WITHIN_SECONDS = DRAIN_SECONDS + 1 + GRACE_SECONDS + 2
CREATORS = 8
LOGGERS = 4  # clients asking for the cheapest page, so the worker writes lines non-stop
LOAN = {"borrower_id": "usr_sigterm", "amount": 250, "currency": "KES"}


def _outcome(error: httpx.TransportError) -> str:
    """'refused' and 'unanswered SYN' are how a stopped server should turn clients away;
    anything else (reset, closed mid-answer) leaves the client not knowing what happened."""
    if isinstance(error, httpx.ConnectError) and "refused" in str(error).lower():
        return "refused"
    if isinstance(error, httpx.ConnectTimeout):
        return "unanswered SYN"
    return f"{type(error).__name__}: {error}"


def _hammer(
    url: str, path: str, stop: threading.Event, outcomes: Counter[str], created: list[str]
) -> None:
    with httpx.Client(base_url=url, timeout=httpx.Timeout(10, connect=2)) as http:
        while not stop.is_set():
            try:
                if path == "/api/loans":
                    response = http.post(path, json=LOAN)
                    if response.status_code == 201:
                        created.append(response.json()["id"])
                else:
                    response = http.get(path)
                outcomes[str(response.status_code)] += 1
            except httpx.TransportError as error:
                outcomes[_outcome(error)] += 1


async def _missing_rows(database_url: str, loan_ids: list[str]) -> set[str]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch("SELECT id FROM loans WHERE id = ANY($1::uuid[])", loan_ids)
    finally:
        await connection.close()
    return set(loan_ids) - {str(row["id"]) for row in rows}


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_sigterm_under_load_exits_in_time_resets_nobody_and_loses_no_create(
    workers: int, committed_database_url: str
) -> None:
    env = {
        "DATABASE_URL": committed_database_url,
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "LOG_FORMAT": "json",
    }
    outcomes: Counter[str] = Counter()
    created: list[str] = []
    hung = 0
    for _ in range(RUNS):
        with live_server(env, workers=workers) as server:
            stop = threading.Event()
            clients = [
                threading.Thread(target=_hammer, args=(server.url, path, stop, outcomes, created))
                for path in ["/api/loans"] * CREATORS + ["/liveness"] * LOGGERS
            ]
            for client in clients:
                client.start()
            time.sleep(1)
            os.kill(server.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + EXIT_WITHIN_SECONDS
            while server.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if server.process.poll() is None:
                hung += 1
                # The whole process group: a hung worker outlives its supervisor.
                server.process.kill()
            time.sleep(0.5)  # clients meet the closed port too
            stop.set()
            for client in clients:
                client.join()

    assert hung == 0, f"{hung} of {RUNS} servers still running {EXIT_WITHIN_SECONDS}s after SIGTERM"
    answered = {"201", "200", "refused", "unanswered SYN"}
    assert set(outcomes) <= answered, f"a connection was reset or left unanswered: {outcomes}"
    assert outcomes["201"] > 0
    assert not asyncio.run(_missing_rows(committed_database_url, created)), "a 201 without a row"
