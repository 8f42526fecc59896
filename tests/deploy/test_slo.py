"""The service level objectives: slo.yaml is the one source of the SLO rules (generated, and
checked to be current), its numbers are the ones the docs state, and every burn-rate alert is
proved by promtool to page, ticket or stay quiet as it should."""

import importlib.util
import re
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest
import yaml

from branchloans.observability.metrics import LATENCY_BUCKETS
from tests.deploy.support import PROMETHEUS_DIR, REPO, promtool

GENERATOR = PROMETHEUS_DIR / "generate_slo_rules.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_slo_rules", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _objectives() -> dict[str, Any]:
    slo: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "slo.yaml").read_text())
    return slo


def _alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "slo-rules.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_slo_rules_are_generated_from_slo_yaml_and_current() -> None:
    result = subprocess.run(
        [sys.executable, GENERATOR, "--check"], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr


def test_prometheus_loads_the_slo_rules() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    result = promtool("check", "rules", "slo-rules.yml")

    assert "slo-rules.yml" in config["rule_files"]
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_slo_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "slo-rules.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", [rule["alert"] for rule in _alerts()])
def test_every_burn_rate_alert_is_proved_to_fire_and_to_stay_quiet(alert: str) -> None:
    unit_tests = yaml.safe_load((PROMETHEUS_DIR / "slo-rules.test.yml").read_text())
    checks = [
        check
        for test in unit_tests["tests"]
        for check in test["alert_rule_test"]
        if check["alertname"] == alert
    ]

    assert any(check["exp_alerts"] for check in checks), f"{alert} never fires"
    assert any(not check["exp_alerts"] for check in checks), f"{alert} never stays quiet"


def test_the_burn_rates_spend_the_stated_share_of_a_30_day_budget() -> None:
    slo = _objectives()
    generator = _generator()

    rates = {
        alert["name"]: (float(generator.burn_rate(slo, alert)), alert["long"], alert["short"])
        for alert in slo["alerts"]
    }

    assert slo["period"] == "30d"
    assert rates == {
        "FastBurn": (14.4, "1h", "5m"),
        "SteadyBurn": (6.0, "6h", "30m"),
        "SlowBurn": (1.0, "3d", "6h"),
    }


def test_fast_and_steady_burns_page_and_a_slow_burn_is_a_ticket() -> None:
    severities = {rule["alert"]: rule["labels"]["severity"] for rule in _alerts()}

    assert {name for name, severity in severities.items() if severity == "warning"} == {
        "BranchLoansAvailabilitySlowBurn",
        "BranchLoansLatencySlowBurn",
    }
    assert set(severities.values()) == {"critical", "warning"}


def test_each_alert_compares_both_windows_with_the_burn_rate_times_the_budget() -> None:
    (fast,) = [rule for rule in _alerts() if rule["alert"] == "BranchLoansAvailabilityFastBurn"]

    assert fast["expr"].split("\nand\n") == [
        'branchloans:slo_errors:ratio_rate1h{job="branchloans-api", slo="availability"} > 0.0144',
        'branchloans:slo_errors:ratio_rate5m{job="branchloans-api", slo="availability"} > 0.0144',
    ]


def test_the_latency_thresholds_are_buckets_of_the_duration_histogram() -> None:
    classes = _objectives()["objectives"]["latency"]["classes"]

    assert [latency_class["seconds"] for latency_class in classes] == [0.1, 0.25]
    assert all(latency_class["seconds"] in LATENCY_BUCKETS for latency_class in classes)


def test_the_docs_state_the_objectives_of_slo_yaml() -> None:
    objectives = _objectives()["objectives"]
    docs = (REPO / "docs" / "slo.md").read_text()

    for objective in objectives.values():
        assert f"{objective['target'] * 100:g}%" in docs
    assert "100 ms" in docs
    assert "250 ms" in docs


def test_the_runbook_of_the_burn_rate_alerts_is_a_heading_of_monitoring_md() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (REPO / "MONITORING.md").read_text().splitlines()
        if line.startswith("#")
    }

    for rule in _alerts():
        assert rule["annotations"]["runbook_url"].rpartition("#")[2] in anchors, rule["alert"]
