"""Monitoring on Kubernetes: the PrometheusRules are every rules file Prometheus loads in
Compose, and the AlertmanagerConfig is alertmanager.yml (generated, and checked to be up to
date), the scrape jobs are the ones the rules name, and the CloudNativePG exporter's metrics
are renamed to the names the rules and the dashboard read."""

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.deploy.kube import K8S_DIR, OVERLAYS, find, one, render
from tests.deploy.support import EXPORTER_METRICS, POSTGRES_EXPORTER_DIR, PROMETHEUS_DIR

# The group that comes with the backup component, in the overlays that take backups.
BACKUP_GROUP = "branchloans-backups"
# What CloudNativePG's exporter serves by default (its `default-monitoring` queries and its
# collector), with the labels a rename depends on.
CNPG_DEFAULT_SERIES = [
    ("cnpg_collector_up", {}),
    ("cnpg_backends_total", {"state": "active"}),
    ("cnpg_backends_max_tx_duration_seconds", {"state": "idle in transaction"}),
    ("cnpg_pg_settings_setting", {"name": "max_connections"}),
    ("cnpg_pg_settings_setting", {"name": "work_mem"}),
    ("cnpg_pg_stat_database_xact_commit", {}),
    ("cnpg_pg_stat_database_xact_rollback", {}),
    ("cnpg_pg_stat_database_blks_hit", {}),
    ("cnpg_pg_stat_database_blks_read", {}),
    ("cnpg_pg_stat_database_deadlocks", {}),
    ("cnpg_pg_stat_archiver_archived_count", {}),
    ("cnpg_pg_stat_archiver_failed_count", {}),
    ("cnpg_pg_stat_archiver_seconds_since_last_archival", {}),
]


def _custom_query_series() -> list[tuple[str, dict[str, str]]]:
    """The cnpg_<query>_<column> series of the project's own queries."""
    queries = yaml.safe_load((POSTGRES_EXPORTER_DIR / "queries.yaml").read_text())
    return [
        (f"cnpg_{name}_{column}", {})
        for name, query in queries.items()
        for metric in query["metrics"]
        for column, spec in metric.items()
        if spec["usage"] != "LABEL"
    ]


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str]:
    """Prometheus's `replace` relabelling (the only action used), rule after rule."""
    labels = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace"
        value = rule.get("separator", ";").join(
            labels.get(name, "") for name in rule.get("sourceLabels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            labels[rule["targetLabel"]] = match.expand(
                re.sub(r"\$(\d+)", r"\\g<\1>", rule["replacement"])
            )
    return labels


def _rules_job(group: str) -> str:
    alerts = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    (rules,) = [g["rules"] for g in alerts["groups"] if g["name"] == group]
    jobs = {job for rule in rules for job in re.findall(r'job="([^"]+)"', rule["expr"])}
    (job,) = jobs
    return job


def test_the_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, K8S_DIR / "generate_monitoring.py", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def _compose_groups() -> dict[str, dict[str, Any]]:
    """Every group of every rules file Prometheus loads in Compose, by name."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return {
        group["name"]: group
        for name in config["rule_files"]
        for group in yaml.safe_load((PROMETHEUS_DIR / name).read_text())["groups"]
    }


def _overlay_groups(overlay: str) -> list[dict[str, Any]]:
    rules = find(render(f"overlays/{overlay}"), "PrometheusRule")
    return [group for rule in rules for group in rule["spec"]["groups"]]


def test_prometheus_loads_every_rules_file_beside_its_config() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    rules_files = {
        path.name
        for path in PROMETHEUS_DIR.glob("*.yml")
        if "groups" in (yaml.safe_load(path.read_text()) or {})
    }

    assert rules_files == set(config["rule_files"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prometheus_rules_are_the_compose_groups_unchanged(overlay: str) -> None:
    sources = _compose_groups()

    groups = _overlay_groups(overlay)

    assert [group for group in groups if group != sources.get(group["name"])] == []
    assert len(groups) == len({group["name"] for group in groups})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_compose_group_is_a_prometheus_rule_and_backups_come_with_backups(
    overlay: str,
) -> None:
    backups = "../../components/cloudnative-pg-backup" in yaml.safe_load(
        (K8S_DIR / "overlays" / overlay / "kustomization.yaml").read_text()
    ).get("components", [])
    expected = set(_compose_groups()) - (set() if backups else {BACKUP_GROUP})

    names = {group["name"] for group in _overlay_groups(overlay)}

    assert names == expected
    assert {"branchloans-slo", "branchloans-replica"} <= names


def test_some_overlay_takes_backups_and_so_runs_every_compose_group() -> None:
    names = {group["name"] for overlay in OVERLAYS for group in _overlay_groups(overlay)}

    assert names == set(_compose_groups())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scrape_jobs_are_the_ones_the_rules_name(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    (api,) = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    (database,) = one(manifests, "PodMonitor")["spec"]["podMetricsEndpoints"]

    assert _relabel(api["relabelings"], {"job": "branch-loans-api"})["job"] == _rules_job(
        "branchloans-api"
    )
    assert _relabel(database["relabelings"], {"job": "x"})["job"] == _rules_job(
        "branchloans-database"
    )


def test_the_cloudnative_pg_metrics_get_the_names_the_rules_and_dashboard_read() -> None:
    (endpoint,) = one(render("overlays/prod"), "PodMonitor")["spec"]["podMetricsEndpoints"]
    renamed = {
        _relabel(endpoint["metricRelabelings"], {"__name__": name, **labels})["__name__"]
        for name, labels in CNPG_DEFAULT_SERIES + _custom_query_series()
    }

    # `up` is Prometheus's own, for every scrape.
    assert EXPORTER_METRICS - {"up"} <= renamed


def test_a_setting_other_than_max_connections_keeps_its_name() -> None:
    (endpoint,) = one(render("overlays/prod"), "PodMonitor")["spec"]["podMetricsEndpoints"]

    renamed = _relabel(
        endpoint["metricRelabelings"], {"__name__": "cnpg_pg_settings_setting", "name": "work_mem"}
    )

    assert renamed["__name__"] == "cnpg_pg_settings_setting"


def test_the_cluster_runs_the_projects_queries_with_pg_stat_statements() -> None:
    manifests = render("overlays/prod")
    cluster = one(manifests, "Cluster")
    (reference,) = cluster["spec"]["monitoring"]["customQueriesConfigMap"]
    config_map = one(manifests, "ConfigMap", reference["name"])

    assert (
        config_map["data"][reference["key"]] == (POSTGRES_EXPORTER_DIR / "queries.yaml").read_text()
    )
    assert (
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
        in (cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"])
    )
    assert any(
        name.startswith("pg_stat_statements.")
        for name in cluster["spec"]["postgresql"]["parameters"]
    )
    (pod_monitor,) = find(manifests, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "cnpg.io/cluster": cluster["metadata"]["name"]
    }


def _routed(route: dict[str, Any], labels: dict[str, str]) -> str:
    """The receiver of the first child route whose matchers all hold, else the parent's."""
    for child in route.get("routes", []):
        matchers = child.get("matchers", [])
        assert all(m.get("matchType", "=") == "=" for m in matchers)
        if all(labels.get(m["name"]) == m["value"] for m in matchers):
            return _routed(child, labels)
    receiver: str = route["receiver"]
    return receiver


@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "pagerduty"), ("warning", "slack")]
)
def test_alertmanager_config_routes_each_severity_as_compose_does(
    severity: str, receiver: str
) -> None:
    config = one(render("overlays/prod"), "AlertmanagerConfig")["spec"]

    assert _routed(config["route"], {"severity": severity}) == receiver
    assert config["route"]["groupBy"] == ["alertname", "service"]
    assert config["inhibitRules"][0]["equal"] == ["service"]


def test_alertmanager_config_reads_its_receivers_from_a_secret_never_committed() -> None:
    manifests = render("overlays/prod")
    config = one(manifests, "AlertmanagerConfig")["spec"]
    (pagerduty,) = next(r for r in config["receivers"] if r["name"] == "pagerduty")[
        "pagerdutyConfigs"
    ]
    (slack,) = next(r for r in config["receivers"] if r["name"] == "slack")["slackConfigs"]

    assert pagerduty["routingKey"] == {
        "name": "alertmanager-receivers",
        "key": "pagerduty_routing_key",
    }
    assert slack["apiURL"] == {"name": "alertmanager-receivers", "key": "slack_webhook_url"}
    assert find(manifests, "Secret") == []
