"""Processes the end-to-end tests start from Debian's packages, and waiting for them."""

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest


def wait_for(what: str, ready: Callable[[], bool], seconds: float, processes: "Processes") -> None:
    """Return once `ready()` is true; fail with every process's log after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} not ready within {seconds} s; {processes.describe()}")


class Processes:
    """Processes the stack started, each in its own session so it stops with its children."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def describe(self) -> str:
        """Each process's state and the end of its log, for a failure message."""
        states = {
            name: {
                "exit code": process.poll(),
                "log": (self.logs / f"{name}.log").read_text(errors="replace")[-2000:],
            }
            for name, process in self.running.items()
        }
        return json.dumps(states, indent=1)

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        """Start `command`, its output in logs/<name>.log."""
        with (self.logs / f"{name}.log").open("wb") as log:
            self.running[name] = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def stop_all(self) -> None:
        """Stop every process, newest first: a polite signal, then SIGKILL after 10 s."""
        for process in reversed(self.running.values()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
