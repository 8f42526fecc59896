"""The benchmark's processes: the service, the ceiling app and wrk, started and stopped here."""

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WRK_SCRIPT = BENCH_DIR / "requests.lua"
# The suffix of the scenarios run on the baseline checkout's service.
BASELINE = " [before]"
# How the service runs here: production-like (INFO logs, JSON, metrics on) with the pool the
# service ships with (DB_POOL_SIZE, DB_MAX_OVERFLOW unset). Staging rather than production
# so that a check refusing default passwords in production cannot stop a benchmark against
# a local trust-auth server; add settings with --env KEY=VALUE.
SERVICE_ENV = {
    "APP_ENV": "staging",  # as production: API keys required, JSON logs, metrics on
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    "METRICS_ENABLED": "true",
    # The per-key limits stay on, but out of reach: one key drives all of wrk's load.
    "KEY_RATE_LIMIT": "1000000000",
    "KEY_CONCURRENCY_LIMIT": "100000",
}


@dataclass
class Result:
    """One wrk run."""

    scenario: str
    stage: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    bad_status: int
    connections: int = 0
    load: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


@dataclass
class Bench:
    """What the run needs everywhere: options, the database, the processes it started."""

    args: argparse.Namespace
    workdir: Path
    dsn: str
    results: list[Result] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Scenario name prefix -> where that side's service answers, for before/after runs.
    services: dict[str, int] = field(default_factory=dict)
    # The same service with development's defaults (console logs), beside the one measured.
    development_port: int | None = None
    api_key: str = ""

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in the service's `postgresql+asyncpg://` form."""
        url = make_url(self.dsn).set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child process: this one's, plus the service settings."""
        settings = dict(item.split("=", 1) for item in self.args.env)
        return {
            **os.environ,
            **SERVICE_ENV,
            **settings,
            "DATABASE_URL": self.sqlalchemy_url,
            **extra,
        }


def log(message: str) -> None:
    """Progress, on stderr, so stdout holds only the report."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def command(name: str) -> list[str]:
    """The project's console script `name`, from the virtualenv running this file."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", f"branchloans.{name}"]


def run(bench: Bench, argv: Sequence[str]) -> str:
    """Run a command to completion with the service environment; its output."""
    done = subprocess.run(
        argv, env=bench.env(), capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start(
    bench: Bench, name: str, argv: Sequence[str], port: int, cwd: Path = ROOT, **env: str
) -> int:
    """Start a server process and wait until it answers on `port`; its pid."""
    log_file = (bench.workdir / f"{name}.log").open("wb")
    # Each server's metrics files in the run's own directory, never in a work tree.
    metrics = str(bench.workdir / f"metrics-{name}")
    process = subprocess.Popen(
        argv,
        env=bench.env(PROMETHEUS_MULTIPROC_DIR=metrics, **env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    bench.processes.append(process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {(bench.workdir / f'{name}.log').read_text()}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process.pid
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not listen on {port} within 60 s")


def serve_variant(bench: Bench, name: str, **env: str) -> int:
    """Start this checkout's `branchloans serve`, with the run's workers and `env` added to
    the service environment, on a free port: a side of a comparison. Its port."""
    port = free_port()
    argv = [*command("branchloans"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    start(bench, name, [*argv, "--workers", str(bench.args.workers)], port, **env)
    return port


def stop(bench: Bench, pid: int) -> None:
    """Stop a process this run started (uvicorn stops its workers on SIGTERM)."""
    for process in bench.processes:
        if process.pid == pid and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_problems(bench: Bench, name: str) -> tuple[int, int]:
    """(lines logged at ERROR or above, tracebacks) in the log of the process `name`."""
    text = (bench.workdir / f"{name}.log").read_text(errors="replace")
    errors = 0
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            if json.loads(line).get("level") in {"error", "critical"}:
                errors += 1
    return errors, text.count("Traceback (most recent call last)")


def worker_rss_mb(pid: int) -> list[float]:
    """Resident memory of each uvicorn worker (the spawned children of `pid`), in MB."""
    sizes = []
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    # One worker runs in the serving process itself.
    workers = [
        child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    for child in workers or [str(pid)]:
        status = Path(f"/proc/{child}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            sizes.append(int(match[1]) / 1024)
    return sizes


def wrk(
    bench: Bench, port: int, lines: list[str], seconds: float, connections: int
) -> dict[str, Any]:
    """Drive 127.0.0.1:`port` with the request `lines` for `seconds`; wrk's figures."""
    requests = bench.workdir / f"requests-{uuid.uuid4().hex[:8]}.txt"
    requests.write_text("\n".join(lines) + "\n")
    argv = [
        "wrk",
        f"-t{min(bench.args.threads, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}",
        "--",
        str(requests),
        bench.api_key,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"^BENCH_RESULT (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed:\n{done.stdout}{done.stderr}")
    figures: dict[str, Any] = json.loads(match[1])
    return figures
