"""Prometheus's config and alert rules, checked and unit-tested by promtool."""

import re

import pytest
import yaml

from tests.deploy.support import PROMETHEUS_DIR, REPO, promtool

# One file per group of rules, so that each group's tests stay beside each other.
UNIT_TEST_FILES = ("alerts.test.yml", "database-alerts.test.yml")
RUNBOOK = "https://github.com/branchloans/branch-loans-api/blob/main/MONITORING.md"


def test_promtool_accepts_the_config() -> None:
    result = promtool("check", "config", "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


@pytest.mark.parametrize("unit_tests", UNIT_TEST_FILES)
def test_the_alert_rules_pass_their_unit_tests(unit_tests: str) -> None:
    result = promtool("test", "rules", unit_tests)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "alert",
    [
        "BranchLoansApiDown",
        "BranchLoansDatabaseUnreachable",
        "PostgresDown",
        "PostgresExporterDown",
        "PostgresConnectionsNearLimit",
        "PostgresLongTransaction",
        "PostgresDeadlocks",
    ],
)
def test_every_alert_has_a_unit_test(alert: str) -> None:
    unit_tests = "".join((PROMETHEUS_DIR / name).read_text() for name in UNIT_TEST_FILES)

    assert f"alertname: {alert}\n" in unit_tests


def test_every_database_alert_links_its_runbook_line_in_monitoring_md() -> None:
    alerts = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    (group,) = [group for group in alerts["groups"] if group["name"] == "branchloans-database"]
    # GitHub's anchor of a heading: lower case, spaces to hyphens, punctuation dropped.
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (REPO / "MONITORING.md").read_text().splitlines()
        if line.startswith("#")
    }

    for rule in group["rules"]:
        link = rule["annotations"]["runbook_url"]
        assert link.startswith(f"{RUNBOOK}#"), rule["alert"]
        assert link.removeprefix(f"{RUNBOOK}#") in anchors, rule["alert"]
