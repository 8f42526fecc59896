"""Prometheus's config and alert rules, checked and unit-tested by promtool."""

import subprocess

import pytest

from tests.deploy.support import PROMETHEUS_DIR, require


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    """promtool run in deploy/prometheus, where the config's relative paths start."""
    return subprocess.run(
        [require("promtool", "prometheus"), *arguments],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )


def test_promtool_accepts_the_config() -> None:
    result = promtool("check", "config", "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "alert",
    [
        "BranchLoansApiDown",
        "BranchLoansDatabaseUnreachable",
        "BranchLoansHighErrorRatio",
        "BranchLoansHighLatencyP95",
    ],
)
def test_every_alert_has_a_unit_test(alert: str) -> None:
    unit_tests = (PROMETHEUS_DIR / "alerts.test.yml").read_text()

    assert f"alertname: {alert}\n" in unit_tests
