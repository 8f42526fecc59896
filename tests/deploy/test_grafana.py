"""The provisioned Grafana dashboard: the seed's panels, on the provisioned datasource, drawn
from the metrics the API and postgres_exporter expose (their PromQL runs for real in
test_stack.py and test_alert_drill.py)."""

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    DASHBOARD_FILE,
    EXPORTER_METRICS,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    api_panels,
)

# The metric names the API's /metrics exposes, by contract.
API_METRICS = {
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_requests_inprogress",
    "loans_created_total",
    "loans_created_amount_total",
    "loans_by_status",
    "db_pool_connections",
    "db_replica_lag_seconds",
    "db_replica_in_use",
    "database_up",
    "build_info",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "event_loop_lag_seconds",
    "key_limit_syncs_total",
    "up",
}
JOB_METRICS = {"branchloans-api": API_METRICS, "postgres": EXPORTER_METRICS}
PROMQL_FUNCTIONS = {
    "sum",
    "rate",
    "increase",
    "histogram_quantile",
    "max",
    "min",
    "topk",
    "vector",
    "count",
    "sum_over_time",
    "by",
    "on",
    "or",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    """The dashboard JSON Grafana loads."""
    document: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return document


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in api_panels(dashboard) for target in panel["targets"]]


def _metric_names(expression: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"|\[[^]]*\]|\{[^}]*\}', "", expression)
    words = set(re.findall(r"[a-z_:][a-z0-9_:]*", without_strings))
    labels = {"le", "status", "state", "currency", "method", "handler", "instance", "statement"}
    labels |= {"job", "slo", "worker", "version", "revision", "python_version"}
    return words - PROMQL_FUNCTIONS - labels


def test_every_panel_reads_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = provisioned["datasources"]

    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
        assert all(target["datasource"] == panel["datasource"] for target in panel["targets"])


@pytest.mark.parametrize(
    ("title", "legends"),
    [
        ("Request rate", None),
        ("Response times", ["p50", "p95", "p99"]),
        ("Status codes", ["{{status}}"]),
        ("Error rate", ["5xx", "4xx"]),
        ("Loans by status", ["{{status}}"]),
        ("Loan creation rate", ["{{currency}}"]),
        ("Loan amounts", ["{{currency}}"]),
        ("Database connections", ["{{state}}"]),
        ("SLIs", ["{{slo}} 5m", "{{slo}} 1h"]),
        ("Error budget left (30 days)", ["{{slo}}"]),
        ("Burn rates", ["{{slo}} 5m", "{{slo}} 1h", "{{slo}} 6h", "{{slo}} 3d"]),
        ("Build", ["{{version}} {{revision}} (Python {{python_version}})"]),
        ("Worker memory", ["{{instance}} {{worker}}"]),
        ("Worker CPU", ["{{instance}} {{worker}}"]),
        ("Event loop lag", ["{{instance}} {{worker}}"]),
    ],
)
def test_the_dashboard_has_the_seeds_panels(
    dashboard: dict[str, Any], title: str, legends: list[str] | None
) -> None:
    (panel,) = [panel for panel in dashboard["panels"] if panel["title"] == title]

    assert panel["targets"]
    if legends is not None:
        assert [target["legendFormat"] for target in panel["targets"]] == legends


def test_panels_have_unique_ids_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    cells: set[tuple[int, int]] = set()

    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def _recorded_series() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "slo-rules.yml").read_text())
    return {
        rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule
    }


def _job(expression: str) -> str:
    (job,) = set(re.findall(r'job="([^"]+)"', expression))
    return job


@pytest.mark.parametrize("job", sorted(JOB_METRICS))
def test_the_dashboard_and_alerts_use_only_their_jobs_metrics(
    dashboard: dict[str, Any], job: str
) -> None:
    alerts = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    expressions = _expressions(dashboard) + [
        rule["expr"] for group in alerts["groups"] for rule in group["rules"]
    ]

    used = set().union(
        *(_metric_names(expression) for expression in expressions if _job(expression) == job)
    )
    # Series recorded by the SLO rules from the API's metrics (level:metric:operations).
    recorded = {name for name in used if ":" in name}

    assert used - recorded == JOB_METRICS[job]
    assert recorded <= _recorded_series()


def test_every_query_is_limited_to_one_known_job(dashboard: dict[str, Any]) -> None:
    for expression in _expressions(dashboard):
        assert _job(expression) in JOB_METRICS, expression
