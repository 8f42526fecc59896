"""Prometheus multiprocess mode: counters of every uvicorn worker summed in one scrape.

prometheus_client chooses the mode when it is first imported, from PROMETHEUS_MULTIPROC_DIR;
`branchloans serve` sets it before uvicorn starts (or imports) any worker. This module is
imported before that, so it imports prometheus_client only inside the functions that need it.
"""

import os
import re
import tempfile
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def directory() -> str | None:
    """The directory workers write their metrics to, or None when running single-process."""
    from prometheus_client import values

    path = os.environ.get(ENV_VAR) or None
    if path is not None and values.ValueClass is values.MutexValue:
        # Metrics would stay in this process while scrapes read the (empty) directory.
        raise RuntimeError(f"{ENV_VAR} was set after prometheus_client was imported")
    return path


def prepare_directory() -> tuple[Path, bool]:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty directory; True when it was created here.

    An operator's directory is reused and emptied of metric files, since values left by an
    earlier run would be added to this one's; without one, a fresh temporary directory is made.
    """
    configured = os.environ.get(ENV_VAR) or None
    if configured is None:
        path = Path(tempfile.mkdtemp(prefix="branchloans-metrics-"))
        os.environ[ENV_VAR] = str(path)
        return path, True
    path = Path(configured)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path, False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_workers(path: str) -> None:
    """Drop the live gauges (requests in progress, pool connections) of workers that are gone.

    A worker that exits cleanly removes its own; this covers one that was killed.
    """
    from prometheus_client import multiprocess

    for entry in os.scandir(path):
        match = _LIVE_GAUGE_FILE.fullmatch(entry.name)
        if match and not _alive(int(match[1])):
            multiprocess.mark_process_dead(int(match[1]), path)


def worker_stopped(path: str) -> None:
    """Bookkeeping for this worker's exit: its live gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid(), path)
