"""The multiprocess directory: fresh for every start, rid of the live gauges of dead workers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from branchloans.observability import multiprocess


def test_a_fresh_directory_is_made_when_none_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(multiprocess.ENV_VAR, "")  # unset, and unset again after the test

    path, made_here = multiprocess.prepare_directory()

    try:
        assert made_here
        assert os.environ[multiprocess.ENV_VAR] == str(path)
        assert list(path.iterdir()) == []
    finally:
        path.rmdir()


def test_a_configured_directory_is_emptied_of_metric_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"left by an earlier run")
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"left by an earlier run")
    (tmp_path / "README").write_text("not ours")
    monkeypatch.setenv(multiprocess.ENV_VAR, str(tmp_path))

    path, made_here = multiprocess.prepare_directory()

    assert (path, made_here) == (tmp_path, False)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["README"]


def _pid_of_a_finished_process() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_the_live_gauges_of_dead_workers_are_forgotten(tmp_path: Path) -> None:
    dead, alive = _pid_of_a_finished_process(), os.getpid()
    for name in (
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"counter_{dead}.db",
        f"gauge_livesum_{alive}.db",
    ):
        (tmp_path / name).write_bytes(b"")

    multiprocess.forget_dead_workers(str(tmp_path))

    # Counters of a dead worker still count: what it served was served.
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        f"counter_{dead}.db",
        f"gauge_livesum_{alive}.db",
    ]


def test_a_directory_set_too_late_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # This test process imported prometheus_client without the variable: single-process mode.
    monkeypatch.setenv(multiprocess.ENV_VAR, str(tmp_path))

    with pytest.raises(RuntimeError, match="after prometheus_client was imported"):
        multiprocess.directory()
