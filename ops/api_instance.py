"""One API instance for the rollout drill: `branchloans serve` on a loopback port, one worker,
as a pod runs it, started, probed and stopped as Kubernetes does."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


class Instance:
    """`branchloans serve` on one loopback port, one worker, as a pod runs it."""

    def __init__(self, name: str, port: int, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.port = port
        self.env = env
        self.logs = logs
        self.metrics = logs / f"{name}-metrics"
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0

    @property
    def url(self) -> str:
        """Where the instance answers, bypassing nginx."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start a new process on the instance's port."""
        self.generation += 1
        log = self.logs / f"{self.name}-{self.generation}.log"
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "branchloans.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                # Emptied at each start: a new process counts its own requests from zero.
                env={**os.environ, **self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics)},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_ready(self, seconds: float = 60) -> None:
        """Return once /readiness answers 200, as a readiness probe would see it."""
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readiness", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} was not ready within {seconds} s")

    def api_requests_answered(self) -> float:
        """Requests to /api this process has answered (its own /metrics)."""
        text = httpx.get(f"{self.url}/metrics", timeout=2).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "http_requests"
            for sample in family.samples
            if sample.name == "http_requests_total"
            and sample.labels.get("handler", "").startswith("/api")
        )

    def wait_until_serving_traffic(self, seconds: float = 30) -> None:
        """Return once nginx has sent the process a request. nginx learns that a server is
        back only by trying it again, fail_timeout (10 s) after it last failed."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if self.api_requests_answered() > 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"nginx sent {self.name} no request within {seconds} s")

    def stop(self, seconds: float = 60) -> int:
        """SIGTERM, as Kubernetes sends it: the process drains, finishes and exits."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise

    def kill(self) -> None:
        """Stop the process at once (cleanup after a failed drill)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
