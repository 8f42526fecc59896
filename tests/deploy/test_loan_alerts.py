"""The loan book alert rules (deploy/prometheus/loan-alerts.yml), checked and unit-tested by
promtool."""

import yaml

from tests.deploy.support import PROMETHEUS_DIR, promtool


def test_prometheus_loads_the_loan_rules() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())

    assert "loan-alerts.yml" in config["rule_files"]


def test_promtool_accepts_the_loan_rules() -> None:
    result = promtool("check", "rules", "loan-alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


def test_the_loan_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "loan-alerts.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_par30_alert_has_a_unit_test() -> None:
    unit_tests = (PROMETHEUS_DIR / "loan-alerts.test.yml").read_text()

    assert "alertname: BranchLoansPar30High\n" in unit_tests
