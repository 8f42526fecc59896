"""The backup alert rules (deploy/prometheus/backup-alerts.yml), checked and unit-tested by
promtool, and the scrape job that feeds them."""

import json
import re

import pytest
import yaml

from tests.deploy.support import (
    BACKUP_ROW,
    DASHBOARD_FILE,
    PROMETHEUS_DIR,
    api_panels,
    promtool,
)

ALERTS = (
    "BranchLoansBackupTooOld",
    "BranchLoansBackupAgeUnknown",
    "BranchLoansWalArchivingFailing",
)


def test_prometheus_loads_the_backup_rules() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())

    assert "backup-alerts.yml" in config["rule_files"]


def test_promtool_accepts_the_backup_rules() -> None:
    result = promtool("check", "rules", "backup-alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    # The alerts, and the recording rule of the newest backup's age they read.
    assert f"SUCCESS: {len(ALERTS) + 1} rules found" in result.stdout


def test_the_backup_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "backup-alerts.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", ALERTS)
def test_every_backup_alert_has_a_unit_test_that_fires_it(alert: str) -> None:
    unit_tests = yaml.safe_load((PROMETHEUS_DIR / "backup-alerts.test.yml").read_text())

    assert any(
        check["alertname"] == alert and check["exp_alerts"]
        for test in unit_tests["tests"]
        for check in test["alert_rule_test"]
    )


def test_the_rules_wait_26_hours_for_a_backup_and_10_minutes_for_archiving() -> None:
    rules = {
        rule.get("alert", rule.get("record")): rule
        for group in yaml.safe_load((PROMETHEUS_DIR / "backup-alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }

    assert "> 26 * 3600" in rules["BranchLoansBackupTooOld"]["expr"]
    assert rules["BranchLoansWalArchivingFailing"]["for"] == "10m"


def test_prometheus_scrapes_the_pgbackrest_exporter_compose_runs(
    rendered: dict[str, object],
) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "pgbackrest"]
    services = rendered["services"]
    assert isinstance(services, dict)

    assert job["static_configs"][0]["targets"] == ["pgbackrest-exporter:9854"]
    assert "monitoring" in services["pgbackrest-exporter"]["networks"]


def _backup_metrics(expression: str) -> set[str]:
    return set(re.findall(r"\b(?:pgbackrest|pg_stat_archiver)_[a-z_]+", expression))


def test_the_dashboards_backup_row_reads_the_series_the_alerts_watch() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    rules = yaml.safe_load((PROMETHEUS_DIR / "backup-alerts.yml").read_text())
    watched = set().union(
        *(_backup_metrics(rule["expr"]) for group in rules["groups"] for rule in group["rules"])
    )
    # The panels from the Backups row down to the next row (the Loan book row follows it).
    below = [panel for panel in dashboard["panels"] if panel not in api_panels(dashboard)]
    later_rows = [panel["gridPos"]["y"] for panel in below[1:] if panel["type"] == "row"]
    row = [panel for panel in below if panel["gridPos"]["y"] < min(later_rows, default=10**6)]
    titles = [panel["title"] for panel in row]
    in_row = [_backup_metrics(target["expr"]) for panel in row for target in panel["targets"]]
    # WAL archiving is drawn once, in the database row, from postgres_exporter's series.
    drawn = set().union(
        *(
            _backup_metrics(target["expr"])
            for panel in dashboard["panels"]
            for target in panel.get("targets", [])
        )
    )

    assert titles == [BACKUP_ROW, "Newest backup age", "Backup age by type"]
    assert all(in_row)
    assert drawn >= watched
