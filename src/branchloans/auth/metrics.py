"""Metrics of the per-key limits: the requests they refused, and their syncs."""

from functools import cache

from prometheus_client import Counter

from branchloans.observability.metrics import Metrics


class KeyLimitMetrics:
    """`key_limit_refusals_total` by limit, and `key_limit_syncs_total` by outcome."""

    def __init__(self, metrics: Metrics) -> None:
        self.refusals = Counter(
            "key_limit_refusals_total",
            "Requests refused with 429 by a per-key limit, by limit (rate, concurrency).",
            ["limit"],
            registry=metrics.registry,
        )
        self.syncs = Counter(
            "key_limit_syncs_total",
            "Syncs of the per-key limits through Postgres, by outcome (ok, failed).",
            ["outcome"],
            registry=metrics.registry,
        )
        # Every series from the start, at 0: a rate of failures reads 0, not "no data".
        for limit in ("rate", "concurrency"):
            self.refusals.labels(limit)
        for outcome in ("ok", "failed"):
            self.syncs.labels(outcome)


@cache  # once per application's metrics: a metric is registered once
def key_limit_metrics(metrics: Metrics) -> KeyLimitMetrics:
    """The per-key limits' metrics, registered with the application's."""
    return KeyLimitMetrics(metrics)
