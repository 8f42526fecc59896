"""What only the database knows, read when Prometheus scrapes: loans by status, database_up."""

import asyncio
import time
from collections.abc import Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.loans.models import LoanStatus
from branchloans.loans.service import count_loans_by_status

logger = structlog.get_logger(__name__)


class DatabaseFigures(Collector):
    """`loans_by_status` and `database_up`, read at scrape time and reused for a few seconds.

    Every worker reads the same rows, so the figures are right with any number of workers
    and right after a restart. When the read fails, `database_up` is 0 and `loans_by_status`
    is left out rather than shown stale.
    """

    def __init__(self) -> None:
        self._by_status: dict[LoanStatus, int] | None = None
        self._read_at: float | None = None

    async def refresh(self, session: AsyncSession, *, max_age: float, seconds: float) -> None:
        """Read the figures again (within `seconds`) unless the last read is under `max_age` old."""
        if self._read_at is not None and time.monotonic() - self._read_at < max_age:
            return
        try:
            async with asyncio.timeout(seconds):
                self._by_status = await count_loans_by_status(session)
        except Exception as error:
            logger.warning("database figures unavailable", error=repr(error))
            self._by_status = None
        self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        """The figures of the last read."""
        up = GaugeMetricFamily(
            "database_up", "1 when the scrape-time database read succeeded, else 0."
        )
        up.add_metric([], 0 if self._by_status is None else 1)
        yield up
        if self._by_status is not None:
            by_status = GaugeMetricFamily(
                "loans_by_status",
                "Loans in each status, read from the database.",
                labels=["status"],
            )
            for status, loans in self._by_status.items():
                by_status.add_metric([status.value], loans)
            yield by_status
