"""What nginx (the deploy template) does when an API instance fails a request: a read, or a
POST with an Idempotency-Key, goes to the other instance; a POST without a key that reached
an instance is never sent twice. Real nginx, in front of two stand-in instances that drop
or answer requests as each test needs."""

import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import httpx
import pytest

from branchloans.app import create_app
from branchloans.certs import ensure_certificates
from ops.nginx_config import NGINX_TEMPLATE, loopback_values, running_nginx
from tests.deploy.support import free_port
from tests.support import SERVER_URL, make_settings

# first: the first instance a request reaches closes the connection without an answer and
# the other answers it; all: every instance drops every request; none: every one answers.
Dropping = Literal["first", "all", "none"]


@dataclass(frozen=True)
class Received:
    """A request as an instance received it."""

    port: int
    method: str
    path: str
    idempotency_key: str | None
    body: bytes


@dataclass
class Instances:
    """Stand-in API instances on loopback ports, sharing what they received."""

    dropping: Dropping
    received: dict[str, list[Received]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, request_id: str, request: Received) -> bool:
        """Record `request`; whether to answer it."""
        with self.lock:
            earlier = self.received.setdefault(request_id, [])
            earlier.append(request)
            return self.dropping == "none" or (self.dropping == "first" and len(earlier) > 1)

    def only_request(self) -> list[Received]:
        """The attempts of the one request the test sent."""
        (attempts,) = self.received.values()
        return attempts


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_InstanceServer"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Received(
            self.server.server_port,
            self.command,
            self.path,
            self.headers.get("Idempotency-Key"),
            body,
        )
        if not self.server.instances.receive(self.headers["X-Request-ID"], request):
            self.close_connection = True  # closed with no answer, as by a stopping server
            return
        answer = json.dumps({"answered_by": self.server.server_port}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _InstanceServer(ThreadingHTTPServer):
    def __init__(self, instances: Instances) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.instances = instances


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate for localhost from the project's own CA."""
    return ensure_certificates(tmp_path_factory.mktemp("certs")).paths.directory


@contextmanager
def serving(dropping: Dropping, count: int = 2) -> Iterator[tuple[Instances, list[int]]]:
    """`count` stand-in instances; what they share, and their ports."""
    instances = Instances(dropping)
    servers = [_InstanceServer(instances) for _ in range(count)]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        yield instances, [server.server_port for server in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@contextmanager
def edge(certs: Path, prefix: Path, ports: list[int]) -> Iterator[httpx.Client]:
    """nginx with the deploy template in front of `ports`; a client of its TLS port."""
    https_port = free_port()
    upstreams = [f"127.0.0.1:{port}" for port in ports]
    values = loopback_values(certs, upstreams, https_port=https_port, http_port=free_port())
    with (
        running_nginx(prefix, values),
        httpx.Client(
            base_url=f"https://localhost:{https_port}",
            verify=ssl.create_default_context(cafile=certs / "ca.crt"),
            timeout=10,
        ) as client,
    ):
        yield client


KEYED = {"Idempotency-Key": "3f1c2a4e-8d0b-4d8e-9a53-1f0e2c7b9d11"}
LOAN = {"borrower_id": "usr_1", "amount": "100.00", "currency": "INR"}


def test_a_read_an_instance_dropped_is_answered_by_the_other(certs: Path, tmp_path: Path) -> None:
    with serving("first") as (instances, ports), edge(certs, tmp_path, ports) as client:
        response = client.get("/api/loans")

    assert response.status_code == 200
    first, second = instances.only_request()
    assert response.json() == {"answered_by": second.port}
    assert {first.port, second.port} == set(ports)


def test_a_keyed_create_an_instance_dropped_is_resent_to_the_other(
    certs: Path, tmp_path: Path
) -> None:
    with serving("first") as (instances, ports), edge(certs, tmp_path, ports) as client:
        response = client.post("/api/loans", json=LOAN, headers=KEYED)

    assert response.status_code == 200
    first, second = instances.only_request()
    assert response.json() == {"answered_by": second.port}
    assert first.port != second.port
    assert first.body == second.body
    assert json.loads(first.body) == LOAN
    assert first.idempotency_key == second.idempotency_key == KEYED["Idempotency-Key"]


def test_a_create_without_a_key_is_never_sent_twice(certs: Path, tmp_path: Path) -> None:
    with serving("first") as (instances, ports), edge(certs, tmp_path, ports) as client:
        response = client.post("/api/loans", json=LOAN)

    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["title"] == "Bad Gateway"
    assert len(instances.only_request()) == 1


def test_a_create_without_a_key_goes_to_the_other_instance_when_one_refuses_connections(
    certs: Path, tmp_path: Path
) -> None:
    stopped = free_port()  # nothing listens there: an instance between two processes
    with (
        serving("none", count=1) as (_, (port,)),
        edge(certs, tmp_path, [stopped, port]) as client,
    ):
        responses = [client.post("/api/loans", json=LOAN) for _ in range(2)]

    assert [response.status_code for response in responses] == [200, 200]
    assert [response.json() for response in responses] == [{"answered_by": port}] * 2


def test_a_keyed_create_no_instance_answers_gets_the_problem_document(
    certs: Path, tmp_path: Path
) -> None:
    with serving("all") as (instances, ports), edge(certs, tmp_path, ports) as client:
        response = client.post("/api/loans", json=LOAN, headers=KEYED)

    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["instance"] == "/api/loans"
    assert sorted(attempt.port for attempt in instances.only_request()) == sorted(ports)


def test_keyed_writes_are_limited_per_client_like_any_other(certs: Path, tmp_path: Path) -> None:
    with serving("none") as (_, ports), edge(certs, tmp_path, ports) as client:
        statuses = [
            client.post("/api/loans", json=LOAN, headers={"Idempotency-Key": f"k{n}"})
            for n in range(40)
        ]

    # 10 writes/s with a burst of 20 (loopback_values): 40 at once cannot all pass.
    refused = [response for response in statuses if response.status_code == 429]
    assert refused
    assert refused[0].headers["Content-Type"] == "application/problem+json"


def test_every_post_route_takes_the_idempotency_key_nginx_resends_on() -> None:
    schema = create_app(make_settings(SERVER_URL)).openapi()
    posts = {path: item["post"] for path, item in schema["paths"].items() if "post" in item}

    assert "/api/loans" in posts
    for path, operation in posts.items():
        parameters = operation.get("parameters", [])
        headers = {p["name"].lower() for p in parameters if p["in"] == "header"}
        assert "idempotency-key" in headers, path


def test_nginx_lets_idle_connections_go_before_the_api_closes_them() -> None:
    upstream = re.search(
        r"^upstream branchloans_api \{(.*?)^\}", NGINX_TEMPLATE.read_text(), re.M | re.S
    )
    assert upstream is not None
    (seconds,) = re.findall(r"^\s*keepalive_timeout (\d+)s;", upstream.group(1), re.M)

    # `branchloans serve` passes HTTP_KEEP_ALIVE_SECONDS to uvicorn.
    assert int(seconds) < make_settings(SERVER_URL).http_keep_alive_seconds
