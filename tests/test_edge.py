"""The real `branchloans serve` against hostile clients: huge headers and slow headers."""

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import LiveServer, database_of_its_own, live_server

HEADER_TIMEOUT = 1.0
CONCURRENCY = 20


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with database_of_its_own("edge") as database_url:
        yield from _serving(database_url)


def _serving(database_url: str) -> Iterator[LiveServer]:
    env = {
        "DATABASE_URL": database_url,
        "HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "HTTP_LIMIT_CONCURRENCY": str(CONCURRENCY),
    }
    with live_server(env) as running:
        yield running


def _connect(server: LiveServer) -> socket.socket:
    address = urlsplit(server.url)
    assert address.hostname is not None
    assert address.port is not None
    return socket.create_connection((address.hostname, address.port), timeout=10)


def _read_until_closed(connection: socket.socket, timeout: float) -> bytes:
    connection.settimeout(timeout)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def test_a_64_mb_header_is_refused_with_431_and_the_connection_closed(
    server: LiveServer,
) -> None:
    before = _rss_kib(server.process.pid)
    started = time.monotonic()
    chunk = b"a" * 65536
    answer = b""
    sent = 0
    with _connect(server) as connection:
        connection.sendall(b"GET /api/loans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        try:
            while sent < 64 * 1024 * 1024:
                connection.sendall(chunk)
                sent += len(chunk)
                if select.select([connection], [], [], 0)[0]:
                    break
            answer = _read_until_closed(connection, timeout=5)
        except (BrokenPipeError, ConnectionResetError):
            pass
    seconds = time.monotonic() - started
    print(  # noqa: T201  (a figure for the reader of `pytest -s`, not a timed assertion)
        f"refused after {sent / 1024:.0f} KiB sent in {seconds:.3f} s; "
        f"worker RSS {before} KiB -> {_rss_kib(server.process.pid)} KiB"
    )

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in head
    assert json.loads(body)["status"] == 431
    assert sent < 64 * 1024 * 1024  # refused long before the end of the header


def test_headers_that_trickle_in_past_the_timeout_get_408_and_a_closed_connection(
    server: LiveServer,
) -> None:
    with _connect(server) as connection:
        connection.sendall(b"GET /liveness HTTP/1.1\r\nHost: x\r\n")

        answer = _read_until_closed(connection, timeout=HEADER_TIMEOUT + 5)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["title"] == "Request Timeout"


def test_slow_header_connections_beyond_the_limit_do_not_stop_a_real_request(
    server: LiveServer,
) -> None:
    slow = [_connect(server) for _ in range(CONCURRENCY * 2)]
    try:
        for connection in slow:
            connection.sendall(b"GET /liveness HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        # Each is cut off at the header timeout, freeing its place for real clients.
        answers = [
            _read_until_closed(connection, timeout=HEADER_TIMEOUT + 5) for connection in slow
        ]

        response = httpx.get(f"{server.url}/liveness", timeout=5)
    finally:
        for connection in slow:
            connection.close()

    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
    assert response.status_code == 200


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    server: LiveServer,
) -> None:
    with _connect(server) as connection:
        assert _read_until_closed(connection, timeout=HEADER_TIMEOUT + 5) == b""


def test_a_body_larger_than_the_header_limit_passes_the_header_guard(
    server: LiveServer,
) -> None:
    # Headers and a 40 KB body (a loan padded with whitespace) arrive together.
    loan = {"borrower_id": "usr_edge", "amount": 100, "currency": "USD"}
    body = json.dumps(loan) + " " * 40_000

    response = httpx.post(
        f"{server.url}/api/loans",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )

    assert response.status_code == 201
    assert response.json()["borrower_id"] == "usr_edge"
