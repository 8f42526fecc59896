"""Business metrics of loans: what was lent, counted once its transaction committed."""

from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter


class LoanMetrics:
    """`loans_created_total` and `loans_created_amount_total`, by currency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter(
            "loans_created_total",
            "Loans created (committed), by currency.",
            ["currency"],
            registry=registry,
        )
        self.amount = Counter(
            "loans_created_amount_total",
            "Principal of the loans created (committed), in units of their currency.",
            ["currency"],
            registry=registry,
        )

    def loan_created(self, currency: str, amount: Decimal) -> None:
        """Count a loan whose transaction has committed."""
        self.created.labels(currency).inc()
        # A float only here: Prometheus values are doubles; the loan itself stays a Decimal.
        self.amount.labels(currency).inc(float(amount))


async def get_loan_metrics(request: Request) -> LoanMetrics:
    """The application's loan metrics.

    A coroutine, so FastAPI calls it in the event loop rather than in a worker thread.
    """
    metrics: LoanMetrics = request.app.state.metrics.loans
    return metrics


LoanMetricsDep = Annotated[LoanMetrics, Depends(get_loan_metrics)]
