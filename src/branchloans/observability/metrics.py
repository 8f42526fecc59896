"""Prometheus metrics of the service, right with one uvicorn worker or several."""

import asyncio
import os
from abc import abstractmethod
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from branchloans.db import Database
from branchloans.observability import multiprocess
from branchloans.observability.runtime import BuildInfo, WorkerMetrics
from branchloans.replica import ReadReplica, ReplicaState

# 1 ms to 10 s: a cached read and a request stuck on the pool timeout are both resolved.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
UNMATCHED_HANDLER = "none"
# How often each worker refreshes its pool and process gauges and times its event loop.
REFRESH_SECONDS = 1.0


def method_label(method: str) -> str:
    """The method as a label value; made-up methods share one, so cardinality stays bounded."""
    return method if method in STANDARD_METHODS else "other"


class HttpMetrics:
    """Requests by method, route template and status; latency; requests in progress."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "handler", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "handler"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "http_requests_inprogress",
            "HTTP requests being answered, by method and route template (all workers).",
            ["method", "handler"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Label lookups take a lock and hash the values; the label sets are few, so keep them.
        self._in_flight: dict[tuple[str, str], tuple[Gauge, Histogram]] = {}
        self._answered: dict[tuple[str, str, str], Counter] = {}

    def started(self, method: str, handler: str) -> tuple[Gauge, Histogram]:
        """Count a request in progress; returns what `finished` needs."""
        key = (method, handler)
        children = self._in_flight.get(key)
        if children is None:
            children = self._in_flight[key] = (
                self.in_progress.labels(method, handler),
                self.duration.labels(method, handler),
            )
        children[0].inc()
        return children

    def finished(
        self, children: tuple[Gauge, Histogram], method: str, handler: str, status: int, took: float
    ) -> None:
        """Record a request answered with `status` after `took` seconds."""
        in_progress, duration = children
        in_progress.dec()
        duration.observe(took)
        key = (method, handler, str(status))
        counter = self._answered.get(key)
        if counter is None:
            counter = self._answered[key] = self.requests.labels(*key)
        counter.inc()


class PoolMetrics:
    """`db_pool_connections{state}`: configured size, checked out, overflow, summed over workers;
    `db_pool_worker_connections{worker, state}`: the same for each worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._summed = Gauge(
            "db_pool_connections",
            "Database pool connections by state (size, checked_out, overflow), all workers summed.",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._by_worker = Gauge(
            "db_pool_worker_connections",
            "Database pool connections of each worker, by state (size, checked_out, overflow).",
            ["worker", "state"],
            multiprocess_mode="livemax",
            registry=registry,
        )

    def observe(self, database: Database) -> None:
        """Copy the pool's current state into the gauges."""
        opened, in_use = database.pool_state()
        # Connections open beyond the configured size are the overflow.
        overflow = max(0, opened - database.pool_size)
        pid = str(os.getpid())
        for state, value in (
            ("size", database.pool_size),
            ("checked_out", in_use),
            ("overflow", overflow),
        ):
            self._summed.labels(state).set(value)
            self._by_worker.labels(pid, state).set(value)


class ReplicaMetrics:
    """The read replica as this application last measured it (worst worker wins)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lag = Gauge(
            "db_replica_lag_seconds",
            "Seconds the read replica's replay is behind, as last measured; the largest worker's.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._up = Gauge(
            "db_replica_up",
            "1 when the read replica answered its last lag measurement, else 0 (any worker's 0).",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self._in_use = Gauge(
            "db_replica_in_use",
            "1 while stale-tolerant reads go to the replica (up and within "
            "REPLICA_MAX_LAG_SECONDS), 0 while they go to the primary.",
            multiprocess_mode="livemin",
            registry=registry,
        )

    def observe(self, replica: ReadReplica) -> None:
        """Copy the replica's last measurement into the gauges."""
        self._up.set(0 if replica.state is ReplicaState.UNREACHABLE else 1)
        self._in_use.set(1 if replica.in_use else 0)
        if replica.lag_seconds is not None:
            self._lag.set(replica.lag_seconds)

    async def follow(self, replica: ReadReplica) -> None:
        """Keep the gauges current."""
        while True:
            self.observe(replica)
            await asyncio.sleep(REFRESH_SECONDS)


class ScrapeFigures(Collector):
    """Figures read from the database when Prometheus scrapes, registered by a domain."""

    @abstractmethod
    async def refresh(self, database: Database, *, max_age: float, seconds: float) -> None:
        """Read the figures again (within `seconds`) unless the last read is under `max_age` old."""

    @abstractmethod
    def collect(self) -> Iterator[Metric]:
        """The figures of the last read."""


class Metrics:
    """Every metric of one application, and the registry a scrape renders."""

    def __init__(self) -> None:
        # `*_created` timestamps double the series and no dashboard reads them (process-wide).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.pool = PoolMetrics(self.registry)
        self._replica: ReplicaMetrics | None = None
        self.worker = WorkerMetrics(self.registry)
        self.figures: list[ScrapeFigures] = []
        self.multiprocess_directory = multiprocess.directory()
        if self.multiprocess_directory is None:
            self._exposed = self.registry
        else:
            # Each worker writes its values to files; a scrape reads and sums all of them.
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=self.multiprocess_directory)
        # The same in every worker, so it is rendered at scrape time rather than summed.
        self._exposed.register(BuildInfo())

    def replica(self) -> ReplicaMetrics:
        """The read replica's gauges, made when the application has a replica: without one,
        no `db_replica_*` series claims a state."""
        if self._replica is None:
            self._replica = ReplicaMetrics(self.registry)
        return self._replica

    def add_figures(self, figures: ScrapeFigures) -> None:
        """Expose figures read at scrape time; registered for the scrape only, so never summed
        per worker."""
        self.figures.append(figures)
        self._exposed.register(figures)

    async def refresh_figures(self, database: Database, *, max_age: float, seconds: float) -> None:
        """Bring every scrape-time figure up to date."""
        for figures in self.figures:
            await figures.refresh(database, max_age=max_age, seconds=seconds)

    async def follow(self, database: Database) -> None:
        """Keep this worker's gauges current, so a scrape answered by another worker sees them,
        and time how late the event loop wakes from each sleep."""
        loop = asyncio.get_running_loop()
        while True:
            self.pool.observe(database)
            self.worker.observe_process()
            slept_at = loop.time()
            await asyncio.sleep(REFRESH_SECONDS)
            self.worker.observe_event_loop_lag(loop.time() - slept_at - REFRESH_SECONDS)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        self.worker.observe_process()
        if self.multiprocess_directory is not None:
            multiprocess.forget_dead_workers(self.multiprocess_directory)
        return generate_latest(self._exposed)

    def close(self) -> None:
        """This worker stops: its live gauges no longer count."""
        if self.multiprocess_directory is not None:
            multiprocess.worker_stopped(self.multiprocess_directory)
