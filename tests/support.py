"""Helpers the tests share that are not fixtures."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import IO

import httpx
from fastapi import FastAPI
from sqlalchemy import make_url

from branchloans.app import create_app
from branchloans.config import Settings

SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def throwaway_database_url(purpose: str) -> str:
    """A URL on the test server for a database nobody else uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"branchloans_test_{purpose}_{worker}_{uuid.uuid4().hex[:8]}"
    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test, ignoring any `.env` file in the working directory."""
    return Settings(_env_file=None, database_url=database_url, **overrides)  # type: ignore[call-arg]


@asynccontextmanager
async def serving(
    settings: Settings,
    *,
    install: Callable[[FastAPI], Awaitable[None]] | None = None,
    raise_app_exceptions: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    """A started app built from `settings` (plus any routes `install` adds) and a client for
    it, with no test transaction."""
    application = create_app(settings)
    if install is not None:
        await install(application)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """A `branchloans serve` process on a loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    log: IO[bytes]

    def output(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait for the exit (SIGKILL after `timeout` seconds); the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def wait_until_live(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll /liveness until it answers; fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it answered")
        try:
            if httpx.get(f"{url}/liveness", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {url} did not answer within {timeout} s")


@contextmanager
def live_server(env: dict[str, str], *, workers: int = 1) -> Iterator[LiveServer]:
    """Run `branchloans serve` with `env` added to this environment, stopped at the end."""
    port = free_port()
    # A file, not a pipe: a pipe nobody reads fills up and blocks the server's logging.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "branchloans.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env={**os.environ, "IDEMPOTENCY_PURGE_INTERVAL": "0", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = LiveServer(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_until_live(server.url, process)
            yield server
        finally:
            server.stop()
