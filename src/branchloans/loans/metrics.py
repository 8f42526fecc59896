"""Metrics of loans: what was lent, counted once committed, and loans by status at scrape time."""

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from functools import cache, partial
from typing import Annotated

import structlog
from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from branchloans.db import Database
from branchloans.loans.listing import get_stats
from branchloans.loans.models import LoanStatus
from branchloans.loans.schemas import PortfolioAtRisk
from branchloans.observability.metrics import Metrics, ScrapeFigures
from branchloans.state import app_state

logger = structlog.get_logger(__name__)


class LoanMetrics:
    """`loans_created_total` and `loans_created_amount_total`, by currency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        by_currency = partial(Counter, labelnames=["currency"], registry=registry)
        self.created = by_currency("loans_created_total", "Loans created (committed), by currency.")
        self.amount = by_currency(
            "loans_created_amount_total",
            "Principal of the loans created (committed), in units of their currency.",
        )
        self.repayments = by_currency(
            "repayments_received_total", "Payments recorded on loans (committed), by currency."
        )
        self.repaid_amount = by_currency(
            "repayments_received_amount_total",
            "Amount of the payments recorded (committed), in units of their currency.",
        )

    def repayment_received(self, currency: str, amount: Decimal) -> None:
        """Count a payment whose transaction has committed."""
        self.repayments.labels(currency).inc()
        self.repaid_amount.labels(currency).inc(float(amount))

    def loan_created(self, currency: str, amount: Decimal) -> None:
        """Count a loan whose transaction has committed."""
        self.created.labels(currency).inc()
        # A float only here: Prometheus values are doubles; the loan itself stays a Decimal.
        self.amount.labels(currency).inc(float(amount))


class LoanFigures(ScrapeFigures):
    """`loans_by_status`, the outstanding principal and PAR30 per currency, and `database_up`,
    read at scrape time and reused for a few seconds.

    Every worker reads the same rows, so the figures are right with any number of workers
    and right after a restart. When the read fails, `database_up` is 0 and `loans_by_status`
    is left out rather than shown stale.
    """

    def __init__(self) -> None:
        self._by_status: dict[LoanStatus, int] | None = None
        self._book: dict[str, PortfolioAtRisk] = {}
        self._read_at: float | None = None

    async def refresh(self, database: Database, *, max_age: float, seconds: float) -> None:
        """Read the figures again (within `seconds`) unless the last read is under `max_age` old."""
        if self._read_at is not None and time.monotonic() - self._read_at < max_age:
            return
        try:
            async with asyncio.timeout(seconds):
                stats = await get_stats(database)
            self._by_status, self._book = stats.by_status, stats.at_risk_by_currency
        except Exception as error:
            logger.warning("database figures unavailable", error=repr(error))
            self._by_status, self._book = None, {}
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
            yield from self._book_figures()

    def _book_figures(self) -> Iterator[Metric]:
        by_currency = partial(GaugeMetricFamily, labels=["currency"])
        outstanding = by_currency(
            "loans_outstanding_principal",
            "Principal not yet repaid of disbursed loans, in units of their currency.",
        )
        par_30 = by_currency(
            "loans_par30_ratio",
            "Portfolio at risk 30: the share of the outstanding principal in loans with a "
            "payment more than 30 days overdue (0 to 1).",
        )
        par_30_amount = by_currency(
            "loans_par30_amount",
            "Outstanding principal of loans with a payment more than 30 days overdue.",
        )
        for currency, book in self._book.items():
            outstanding.add_metric([currency], float(book.outstanding_principal))
            par_30.add_metric([currency], float(book.par_30.ratio))
            par_30_amount.add_metric([currency], float(book.par_30.amount))
        yield from (outstanding, par_30, par_30_amount)


@cache  # once per application's metrics: a metric is registered once
def loan_metrics(metrics: Metrics) -> LoanMetrics:
    """Register the loans' metrics and figures with the application's; the counters."""
    metrics.add_figures(LoanFigures())
    return LoanMetrics(metrics.registry)


async def get_loan_metrics(request: Request) -> LoanMetrics:
    """The application's loan metrics.

    A coroutine, so FastAPI calls it in the event loop rather than in a worker thread.
    """
    return loan_metrics(app_state(request.app).metrics)


LoanMetricsDep = Annotated[LoanMetrics, Depends(get_loan_metrics)]
