"""What is deployed and how each worker fares: build, memory, CPU, descriptors, event loop.

In multiprocess mode prometheus_client exports no process metrics (each worker's would be
summed into nonsense). Here every worker writes its own figures as live gauges labelled
`worker` with its pid (prometheus_client keeps a label named `pid` only in its `all` modes):
a worker that stops removes them, and a scrape drops those of a worker that was killed
(`multiprocess.forget_dead_workers`).
"""

import os
import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from branchloans import __version__

# Set at image build time from the Containerfile's REVISION argument (the git commit).
REVISION_ENV_VAR = "APP_REVISION"
UNKNOWN_REVISION = "unknown"
# ProcessCollector's figures, under the names every Prometheus user knows, plus `worker`.
PROCESS_FIGURES = {
    "process_resident_memory_bytes": "Resident memory of each worker, in bytes.",
    "process_virtual_memory_bytes": "Virtual memory of each worker, in bytes.",
    "process_cpu_seconds_total": "User and system CPU time of each worker, in seconds (grows).",
    "process_open_fds": "Open file descriptors of each worker.",
    "process_max_fds": "The open file descriptor limit of each worker.",
    "process_start_time_seconds": "When each worker started, in seconds since the Unix epoch.",
}


def revision() -> str:
    """The git commit the running code was built from, or `unknown` outside a built image."""
    return os.environ.get(REVISION_ENV_VAR) or UNKNOWN_REVISION


class BuildInfo(Collector):
    """`build_info{version, revision, python_version} 1`: which build answers the scrape."""

    def __init__(self) -> None:
        self._labels = {
            "version": __version__,
            "revision": revision(),
            "python_version": platform.python_version(),
        }

    def collect(self) -> Iterator[Metric]:
        """One series, always 1; its labels are the information."""
        family = GaugeMetricFamily(
            "build_info",
            "The running build: package version, git revision, Python version.",
            labels=list(self._labels),
        )
        family.add_metric(list(self._labels.values()), 1)
        yield family


class WorkerMetrics:
    """Per-worker process figures and event loop lag, each series labelled `worker` with the pid."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Reads /proc/self; not registered, its figures are copied into the gauges below.
        self._reader = ProcessCollector(registry=None)
        self._figures = {
            name: Gauge(name, text, ["worker"], multiprocess_mode="livemax", registry=registry)
            for name, text in PROCESS_FIGURES.items()
        }
        self._event_loop_lag = Gauge(
            "event_loop_lag_seconds",
            "How late each worker's event loop woke from its last one-second sleep.",
            ["worker"],
            multiprocess_mode="livemax",
            registry=registry,
        )

    def observe_process(self) -> None:
        """Copy this process's current figures into its gauges."""
        pid = str(os.getpid())
        for family in self._reader.collect():
            for figure in family.samples:
                gauge = self._figures.get(figure.name)
                if gauge is not None:
                    gauge.labels(pid).set(figure.value)

    def observe_event_loop_lag(self, seconds: float) -> None:
        """Record how late the event loop ran a timer that was due."""
        self._event_loop_lag.labels(str(os.getpid())).set(max(0.0, seconds))
