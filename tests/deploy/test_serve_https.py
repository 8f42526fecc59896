"""`make https` (deploy/nginx/serve-https): the API behind the machine's nginx, without Docker."""

import os
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.support import REPO, free_port, require
from tests.support import database_of_its_own

SCRIPT = REPO / "deploy" / "nginx" / "serve-https"
STARTUP_SECONDS = 60


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    https_port: int
    http_port: int
    ca_cert: Path
    log: Path


@pytest.fixture(scope="module")
def serve_https() -> Iterator[Running]:
    require("nginx", "nginx")
    with database_of_its_own("https") as database_url, tempfile.TemporaryDirectory() as state:
        running = Running(
            process=None,  # type: ignore[arg-type]
            https_port=free_port(),
            http_port=free_port(),
            ca_cert=Path(state) / "certs" / "ca.crt",
            log=Path(state) / "output.log",
        )
        env = {
            **os.environ,
            "PORT": str(free_port()),
            "HTTPS_PORT": str(running.https_port),
            "HTTP_PORT": str(running.http_port),
            "HTTPS_DIR": state,
            "DATABASE_URL": database_url,
            "PROMETHEUS_MULTIPROC_DIR": state,
        }
        with running.log.open("wb") as log:
            # A session of its own: Ctrl-C reaches the script, not pytest.
            running.process = subprocess.Popen(
                [SCRIPT], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                _wait_until_served(running)
                yield running
            finally:
                if running.process.poll() is None:
                    os.killpg(running.process.pid, signal.SIGKILL)


def _trusting(ca_cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_cert)


def _wait_until_served(running: Running) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"serve-https exited:\n{running.log.read_text()}")
        if running.ca_cert.exists():
            try:
                url = f"https://localhost:{running.https_port}/liveness"
                if httpx.get(url, verify=_trusting(running.ca_cert)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    pytest.fail(f"serve-https did not answer in {STARTUP_SECONDS} s:\n{running.log.read_text()}")


def test_https_answers_with_a_certificate_the_local_ca_signed(serve_https: Running) -> None:
    response = httpx.get(
        f"https://localhost:{serve_https.https_port}/api/loans",
        verify=_trusting(serve_https.ca_cert),
    )

    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_a_post_to_plain_http_is_redirected_and_still_makes_the_loan(serve_https: Running) -> None:
    body = {"borrower_id": "usr_https", "amount": 100, "currency": "KES"}
    with httpx.Client(verify=_trusting(serve_https.ca_cert), follow_redirects=True) as client:
        response = client.post(f"http://localhost:{serve_https.http_port}/api/loans", json=body)

    assert [step.status_code for step in response.history] == [308]
    assert response.status_code == 201


def test_ctrl_c_stops_nginx_and_the_api(serve_https: Running) -> None:
    os.killpg(serve_https.process.pid, signal.SIGINT)
    serve_https.process.wait(timeout=30)

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://localhost:{serve_https.https_port}/liveness", verify=False)
