"""Error tracking: with SENTRY_DSN set, a 500 reaches the Sentry endpoint (here a receiver on
loopback) with the request id and trace id and without secrets; 4xx answers are not reported;
without a DSN the SDK is not even imported."""

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI

from branchloans import __version__
from branchloans.app import create_app
from branchloans.config import Settings
from branchloans.problems import ProblemError

ROOT = Path(__file__).resolve().parents[2]
REQUEST_ID = "req-sentry-1"
TRACE_ID = "771a43a4192642f0b136d5159a501700"
API_KEY = "blk_0123456789ab_NotARealKeyButShapedLikeOne"  # pragma: allowlist secret
BODY_PASSWORD = "hunter2-in-the-body"  # pragma: allowlist secret
COOKIE = "session=cookie-secret-value"


class Receiver(ThreadingHTTPServer):
    """Stands in for Sentry: keeps the envelopes posted to it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EnvelopeHandler)
        self.envelopes: list[str] = []

    def events(self) -> list[dict[str, Any]]:
        """The event items of every envelope received (an envelope is JSON lines)."""
        found = []
        for envelope in self.envelopes:
            lines = envelope.splitlines()
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found


class _EnvelopeHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.append(body.decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what arrived, not the server's log."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def tracked_app(
    settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FastAPI]:
    """The API reporting to the receiver, with test-only routes that fail; JSON logs, as
    staging and production write them (the console renderer draws tracebacks slowly)."""
    monkeypatch.setenv("SENTRY_DSN", f"http://publickey@127.0.0.1:{receiver.server_port}/1")
    app = create_app(settings.model_copy(update={"log_format": "json"}))

    async def server_fault() -> None:
        raise RuntimeError("the ledger disagrees with itself")

    async def conflict() -> None:
        raise ProblemError(409, "The loan changed meanwhile.")

    app.add_api_route("/test-only/fault", server_fault, methods=["POST"])
    app.add_api_route("/test-only/conflict", conflict, methods=["POST"])
    yield app
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
async def tracked_client(tracked_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=tracked_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def _post_with_secrets(client: httpx.AsyncClient, path: str) -> httpx.Response:
    return await client.post(
        path,
        json={"password": BODY_PASSWORD},
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "X-API-Key": API_KEY,
            "Cookie": COOKIE,
            "X-Request-ID": REQUEST_ID,
            "sentry-trace": f"{TRACE_ID}-b0e6f15b45c36b12-1",
        },
    )


async def test_a_500_reaches_sentry_with_request_id_trace_id_environment_and_release(
    tracked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    response = await _post_with_secrets(tracked_client, "/test-only/fault")
    sentry_sdk.flush(timeout=10)

    assert response.status_code == 500
    [event] = receiver.events()
    assert event["tags"]["request_id"] == REQUEST_ID
    assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert event["environment"] == "development"
    assert event["release"] == f"branchloans@{__version__}"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is False


async def test_the_reported_500_carries_no_key_authorization_cookie_or_body(
    tracked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await _post_with_secrets(tracked_client, "/test-only/fault")
    sentry_sdk.flush(timeout=10)

    everything_sent = "\n".join(receiver.envelopes)
    assert len(receiver.events()) == 1
    for secret in (API_KEY, BODY_PASSWORD, "cookie-secret-value"):
        assert secret not in everything_sent
    assert "the ledger disagrees with itself" in everything_sent


async def test_4xx_answers_are_not_reported(
    tracked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    conflict = await _post_with_secrets(tracked_client, "/test-only/conflict")
    missing = await tracked_client.get("/no/such/path")
    # A 500 afterwards shows the reporting works, and is the only thing that arrives.
    await tracked_client.post("/test-only/fault")
    sentry_sdk.flush(timeout=10)

    assert (conflict.status_code, missing.status_code) == (409, 404)
    assert [event["exception"]["values"][-1]["type"] for event in receiver.events()] == [
        "RuntimeError"
    ]


def _sentry_imported_by_create_app(environment: dict[str, str]) -> bool:
    program = (
        "import sys\n"
        "from branchloans.app import create_app\n"
        "create_app()\n"
        "print('sentry_sdk' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip().splitlines()[-1] == "True"


def test_without_a_dsn_the_sdk_is_not_imported() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}

    assert not _sentry_imported_by_create_app(environment)


def test_with_a_dsn_the_sdk_is_imported() -> None:
    # An unroutable port: init only configures, nothing is sent without an error.
    environment = {**os.environ, "SENTRY_DSN": "http://publickey@127.0.0.1:9/1"}

    assert _sentry_imported_by_create_app(environment)
