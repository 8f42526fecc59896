"""nginx and W3C trace context: a caller's traceparent passed on, one started when absent."""

import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from branchloans.certs import ensure_certificates
from tests.deploy.support import free_port, require, write_nginx_config

TRACEPARENT = re.compile(r"00-(?P<trace>[0-9a-f]{32})-(?P<parent>[0-9a-f]{16})-(?P<flags>0[01])")
STARTED = 400


class _Echo(BaseHTTPRequestHandler):
    """The upstream: answers with the traceparent and X-Request-ID it was sent."""

    def do_GET(self) -> None:
        self.send_response(200)
        for name in ("traceparent", "X-Request-ID"):
            self.send_header(f"Echo-{name}", self.headers.get(name, ""))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """nginx, sampling 10% of the traces it starts, in front of the echoing upstream."""
    nginx = require("nginx", "nginx")
    root = tmp_path_factory.mktemp("nginx-tracing")
    certs = ensure_certificates(root / "certs").paths
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    https_port = free_port()
    config = write_nginx_config(
        root / "nginx",
        {
            "NGINX_SERVER_NAMES": "localhost",
            "NGINX_HTTP_PORT": str(free_port()),
            "NGINX_HTTPS_PORT": str(https_port),
            "NGINX_PUBLIC_HTTPS_PORT": str(https_port),
            "NGINX_UPSTREAM": f"127.0.0.1:{upstream.server_address[1]}",
            "NGINX_CERT": str(certs.server_cert),
            "NGINX_CERT_KEY": str(certs.server_key),
            "NGINX_WRITE_RATE": "10r/s",
            "NGINX_WRITE_BURST": "20",
            "NGINX_MAX_BODY_SIZE": "1m",
            "NGINX_TRACE_SAMPLE_PERCENT": "10",
        },
    )
    process = subprocess.Popen(
        [nginx, "-e", "stderr", "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    client = httpx.Client(
        base_url=f"https://localhost:{https_port}",
        verify=ssl.create_default_context(cafile=certs.ca_cert),
        timeout=5,
    )
    try:
        _wait_until_listening(client, process)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(10)
        upstream.shutdown()
        upstream.server_close()


def _wait_until_listening(client: httpx.Client, process: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            client.get("/")
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError("nginx did not listen")


def test_a_callers_traceparent_reaches_the_api_unchanged(edge: httpx.Client) -> None:
    sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = edge.get("/api/loans", headers={"traceparent": sent})
    assert response.headers["Echo-traceparent"] == sent


def test_without_a_traceparent_nginx_starts_one_whose_trace_id_is_the_request_id(
    edge: httpx.Client,
) -> None:
    response = edge.get("/api/loans")
    match = TRACEPARENT.fullmatch(response.headers["Echo-traceparent"])
    assert match is not None
    assert match["trace"] == response.headers["Echo-X-Request-ID"]
    assert match["parent"] == match["trace"][:16]


def test_a_malformed_traceparent_is_replaced(edge: httpx.Client) -> None:
    sent = "00-NOT-A-TRACE-01"
    response = edge.get("/api/loans", headers={"traceparent": sent})
    assert TRACEPARENT.fullmatch(response.headers["Echo-traceparent"])


def test_nginx_marks_about_the_configured_share_of_the_traces_it_starts_sampled(
    edge: httpx.Client,
) -> None:
    flags = [
        TRACEPARENT.fullmatch(edge.get("/api/loans").headers["Echo-traceparent"])
        for _ in range(STARTED)
    ]
    sampled = sum(match is not None and match["flags"] == "01" for match in flags)
    # 40 expected at 10%; the bounds are more than four standard deviations (6) away.
    assert 15 <= sampled <= 65
