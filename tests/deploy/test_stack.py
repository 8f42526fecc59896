"""The stack for real, from Debian's packages on loopback ports: PostgreSQL, the API with two
workers, nginx running the rendered deploy/nginx template with a certificate from the project's
CA, and Prometheus running deploy/prometheus. Every HTTPS call verifies against that CA."""

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from branchloans.certs import ensure_certificates
from branchloans.migrate import create_database_if_missing, drop_database, upgrade_to_head
from tests.deploy.processes import Processes, wait_for
from tests.deploy.support import (
    PROMETHEUS_DIR,
    alert_signals,
    dashboard_queries,
    free_port,
    require,
    write_nginx_config,
)
from tests.support import throwaway_database_url

BIN = Path(sys.executable).parent
# Generous: the machine may be busy with other test runs; a healthy start takes a few seconds.
STARTUP_SECONDS = 60
# Two scrapes 10 s apart after the first traffic, with room to spare.
SCRAPE_SECONDS = 60
# Low enough for a test burst to trip, high enough for the other tests' few writes.
WRITE_RATE, WRITE_BURST = "5r/s", "10"
SCOPES = "loans:read,loans:write"

LOAN = {
    "borrower_id": "usr_stack_001",
    "amount": "15000.00",
    "currency": "INR",
    "term_months": 12,
    "interest_rate_apr": "18.50",
}


@dataclass(frozen=True)
class Stack:
    """Where the running stack answers."""

    api: str
    api_key: str
    metrics: str
    https_port: int
    http_port: int
    prometheus: str
    ca: Path
    logs: Path

    def api_log_lines(self) -> list[dict[str, Any]]:
        """The API's JSON log lines so far."""
        lines = (self.logs / "api.log").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def https(self) -> httpx.Client:
        """A client for nginx's TLS port as https://localhost, trusting only the project's CA."""
        return httpx.Client(
            base_url=f"https://localhost:{self.https_port}",
            verify=ssl.create_default_context(cafile=self.ca),
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )

    def as_branchloans_com(
        self, client: httpx.Client, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        """A request to https://branchloans.com:PORT sent to 127.0.0.1, like `curl --resolve`."""
        return client.request(
            method,
            f"https://127.0.0.1:{self.https_port}{path}",
            headers={"Host": f"branchloans.com:{self.https_port}", **kwargs.pop("headers", {})},
            extensions={"sni_hostname": "branchloans.com"},
            **kwargs,
        )


def _start_api(
    processes: Processes, database_url: str, port: int, metrics_port: int
) -> tuple[str, str]:
    """The API as staging runs it, its demo loans seeded; its URL and an API key for it."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "APP_ENV": "staging",
        "LOG_LEVEL": "INFO",
        "TRUSTED_PROXIES": "127.0.0.1",
        "METRICS_PORT": str(metrics_port),
        # As in the image: each log line is written when it is logged.
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run([BIN / "branchloans", "seed"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [BIN / "branchloans", "api-keys", "create", "--name", "stack-test", "--scopes", SCOPES],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    processes.start(
        "api",
        [
            str(BIN / "branchloans"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env,
    )
    return f"http://127.0.0.1:{port}", key


def _start_nginx(processes: Processes, root: Path, api_port: int, certs: Path) -> tuple[int, int]:
    nginx = require("nginx", "nginx")
    http_port, https_port = free_port(), free_port()
    config = write_nginx_config(
        root / "nginx",
        {
            "NGINX_SERVER_NAMES": "branchloans.com localhost",
            "NGINX_HTTP_PORT": str(http_port),
            "NGINX_HTTPS_PORT": str(https_port),
            "NGINX_PUBLIC_HTTPS_PORT": str(https_port),
            "NGINX_UPSTREAM": f"127.0.0.1:{api_port}",
            "NGINX_CERT": str(certs / "server.crt"),
            "NGINX_CERT_KEY": str(certs / "server.key"),
            "NGINX_WRITE_RATE": WRITE_RATE,
            "NGINX_WRITE_BURST": WRITE_BURST,
            "NGINX_MAX_BODY_SIZE": "1m",
            "NGINX_TRACE_SAMPLE_PERCENT": "10",
        },
    )
    processes.start(
        "nginx",
        [nginx, "-e", "stderr", "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"],
    )
    return http_port, https_port


def _start_prometheus(processes: Processes, root: Path, metrics_port: int) -> str:
    prometheus = require("prometheus", "prometheus")
    config_dir = root / "prometheus"
    # deploy/prometheus as it is, but for the target: the API's loopback metrics port.
    shutil.copytree(PROMETHEUS_DIR, config_dir)
    (config_dir / "targets" / "api.yml").write_text(
        yaml.safe_dump([{"targets": [f"127.0.0.1:{metrics_port}"]}])
    )
    port = free_port()
    processes.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The running stack, stopped and its database dropped after the module's tests."""
    root = tmp_path_factory.mktemp("stack")
    logs = root / "logs"
    logs.mkdir()
    database_url = throwaway_database_url("stack")
    processes = Processes(logs)
    asyncio.run(create_database_if_missing(database_url))
    try:
        upgrade_to_head(database_url)
        certs = ensure_certificates(root / "certs").paths
        api_port, metrics_port = free_port(), free_port()
        api, key = _start_api(processes, database_url, api_port, metrics_port)
        http_port, https_port = _start_nginx(processes, root, api_port, certs.directory)
        prometheus = _start_prometheus(processes, root, metrics_port)
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        built = Stack(api, key, metrics, https_port, http_port, prometheus, certs.ca_cert, logs)
        wait_for(
            "the API",
            lambda: httpx.get(f"{api}/readiness").status_code == 200,
            STARTUP_SECONDS,
            processes,
        )
        with built.https() as client:
            wait_for(
                "nginx",
                lambda: client.get("/liveness").status_code == 200,
                STARTUP_SECONDS,
                processes,
            )
        wait_for(
            "Prometheus",
            lambda: httpx.get(f"{prometheus}/-/ready").status_code == 200,
            STARTUP_SECONDS,
            processes,
        )
        yield built
    finally:
        processes.stop_all()
        asyncio.run(drop_database(database_url))


def test_a_loan_created_through_nginx_reads_back_over_https(stack: Stack) -> None:
    with stack.https() as client:
        created = stack.as_branchloans_com(client, "POST", "/api/loans", json=LOAN)
        read = stack.as_branchloans_com(client, "GET", created.headers["Location"])

    assert created.status_code == 201
    assert read.status_code == 200
    assert read.json() == created.json()
    assert read.json()["amount"] == 15000.00


def test_the_readme_curl_command_verifies_against_the_project_ca(stack: Stack) -> None:
    curl = require("curl", "curl")
    result = subprocess.run(
        [
            curl,
            "--silent",
            "--show-error",
            "--fail",
            "--resolve",
            f"branchloans.com:{stack.https_port}:127.0.0.1",
            "--cacert",
            str(stack.ca),
            f"https://branchloans.com:{stack.https_port}/health",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"


def test_a_client_that_does_not_trust_the_ca_is_refused(stack: Stack) -> None:
    with (
        httpx.Client(verify=ssl.create_default_context()) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://localhost:{stack.https_port}/liveness")


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        (ssl.TLSVersion.TLSv1_1, False),
        (ssl.TLSVersion.TLSv1_2, True),
        (ssl.TLSVersion.TLSv1_3, True),
    ],
    ids=["TLSv1.1", "TLSv1.2", "TLSv1.3"],
)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_only_tls_1_2_and_1_3_are_spoken(
    stack: Stack, version: ssl.TLSVersion, accepted: bool
) -> None:
    context = ssl.create_default_context(cafile=stack.ca)
    if version < ssl.TLSVersion.TLSv1_2:
        # Let the client offer an old version, so that only the server can refuse it.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = version

    def get() -> httpx.Response:
        with httpx.Client(verify=context) as client:
            return client.get(f"https://localhost:{stack.https_port}/liveness")

    if accepted:
        assert get().status_code == 200
    else:
        with pytest.raises(httpx.ConnectError):
            get()


def test_plain_http_redirects_permanently_to_https_keeping_the_method(stack: Stack) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{stack.http_port}/api/loans?limit=1",
        headers={"Host": f"branchloans.com:{stack.http_port}"},
        json={},
    )

    assert response.status_code == 308
    assert response.headers["Location"] == (
        f"https://branchloans.com:{stack.https_port}/api/loans?limit=1"
    )


def test_responses_carry_hsts_and_security_headers(stack: Stack) -> None:
    with stack.https() as client:
        response = client.get("/api/loans")

    assert response.status_code == 200
    once = {
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Server": "nginx",
    }
    assert {name: response.headers.get_list(name) for name in once} == {
        name: [value] for name, value in once.items()
    }


def test_json_is_gzipped(stack: Stack) -> None:
    with stack.https() as client:
        response = client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.json()["info"]["title"] == "Branch Loans API"


def test_a_clients_request_id_reaches_the_api_and_comes_back(stack: Stack) -> None:
    with stack.https() as client:
        response = client.get("/api/loans", headers={"X-Request-ID": "stack-test-0001"})

    assert response.headers["X-Request-ID"] == "stack-test-0001"


def test_the_api_sees_the_client_nginx_saw_not_a_forged_one(stack: Stack) -> None:
    with stack.https() as client:
        client.get(
            "/api/stats",
            headers={"X-Request-ID": "stack-xff-0001", "X-Forwarded-For": "203.0.113.7"},
        )

    # The access line is written once the response is sent, so it may trail the response.
    deadline = time.monotonic() + 5
    while True:
        lines = [
            entry
            for entry in stack.api_log_lines()
            if entry.get("request_id") == "stack-xff-0001" and entry.get("path") == "/api/stats"
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (line,) = lines
    assert line["client"] == "127.0.0.1"
    assert line["status_code"] == 200


@pytest.mark.parametrize("sent", [None, "not a sane id; <script>"], ids=["absent", "insane"])
def test_nginx_makes_the_request_id_when_the_client_has_no_sane_one(
    stack: Stack, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    with stack.https() as client:
        first = client.get("/api/loans", headers=headers)
        second = client.get("/api/loans", headers=headers)

    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "path", ["/metrics", "/metrics/", "//metrics", "/%6Detrics", '/metrics/"quoted"\\']
)
def test_metrics_cannot_be_reached_through_nginx(stack: Stack, path: str) -> None:
    with stack.https() as client:
        response = client.get(path)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404  # valid JSON, whatever the path holds
    assert httpx.get(stack.metrics).status_code == 200
    assert httpx.get(f"{stack.api}/metrics").status_code == 404


def test_nginxs_own_answers_carry_the_request_id_and_instance(stack: Stack) -> None:
    with stack.https() as client:
        response = client.get("/metrics", headers={"X-Request-ID": "edge-0001"})

    assert response.headers.get_list("X-Request-ID") == ["edge-0001"]
    problem = response.json()
    assert (problem["request_id"], problem["instance"]) == ("edge-0001", "/metrics")


def test_a_body_over_the_limit_is_refused_by_nginx(stack: Stack) -> None:
    with stack.https() as client:
        response = client.post(
            "/api/loans",
            content=b"{" + b" " * (1024 * 1024 + 1) + b"}",
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 413
    assert problem["detail"] == "The request body exceeds the limit of 1 MiB."
    assert problem["request_id"] == response.headers["X-Request-ID"]
    assert problem["instance"] == "/api/loans"


def test_a_burst_of_writes_from_one_client_is_answered_429(stack: Stack) -> None:
    with stack.https() as client:
        statuses = [client.post("/api/loans", json={}).status_code for _ in range(30)]
        limited = client.post("/api/loans", json={})
        read = client.get("/api/loans")

    assert set(statuses) == {422, 429}
    assert statuses.count(429) >= 10
    assert limited.status_code == 429
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert limited.json()["status"] == 429
    assert limited.json()["request_id"] == limited.headers["X-Request-ID"]
    assert read.status_code == 200


def _dashboard_queries() -> list[tuple[str, str]]:
    return dashboard_queries("branchloans-api")


def _alert_signals() -> list[tuple[str, str]]:
    return alert_signals("branchloans-api")


def _send_traffic(stack: Stack) -> None:
    with stack.https() as client:
        for currency in ("INR", "KES"):
            client.post("/api/loans", json=LOAN | {"currency": currency})
        client.get("/api/loans")
        client.get("/api/stats")
        client.get("/api/loans/00000000-0000-0000-0000-000000000009")
        client.post("/api/loans", json={"amount": "-1"})


def _query(stack: Stack, expression: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{stack.prometheus}/api/v1/query", data={"query": expression})
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.fixture(scope="module")
def scraped(stack: Stack) -> Callable[[str], list[dict[str, Any]]]:
    """Run a PromQL expression once Prometheus has it, sending traffic while it waits.

    One deadline for all the queries: the first ones wait for the scrapes, the rest find the
    data already there (or, when it never comes, fail without waiting again).
    """
    deadline = time.monotonic() + SCRAPE_SECONDS
    _send_traffic(stack)

    def query_with_data(expression: str) -> list[dict[str, Any]]:
        while True:
            result = _query(stack, expression)
            if result or time.monotonic() > deadline:
                return result
            _send_traffic(stack)
            time.sleep(1)

    return query_with_data


def test_prometheus_scrapes_the_api(scraped: Callable[[str], list[dict[str, Any]]]) -> None:
    # A scrape may time out on a busy machine (up 0); the next ones must succeed.
    (series,) = scraped('up{job="branchloans-api"} == 1')

    assert series["metric"]["instance"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    "expression",
    [expression for _, expression in _dashboard_queries()],
    ids=[name for name, _ in _dashboard_queries()],
)
def test_every_dashboard_query_returns_data(
    scraped: Callable[[str], list[dict[str, Any]]], expression: str
) -> None:
    result = scraped(expression.replace("$__rate_interval", "1m"))

    assert result, expression


@pytest.mark.parametrize(
    "signal",
    [signal for _, signal in _alert_signals()],
    ids=[name for name, _ in _alert_signals()],
)
def test_every_alert_watches_a_signal_with_data(
    scraped: Callable[[str], list[dict[str, Any]]], signal: str
) -> None:
    assert scraped(signal), signal
