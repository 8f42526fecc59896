"""Alertmanager's configuration, checked by amtool: it loads, and each alert of alerts.yml and
slo-rules.yml is routed to the receiver its severity names (critical pages, warnings go to
Slack: the error budget's slow burn is a ticket, its fast and steady burns page)."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import ALERTMANAGER_DIR, PROMETHEUS_DIR, require

CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
RECEIVER_OF_SEVERITY = {"critical": "pagerduty", "warning": "slack"}


def amtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    """amtool on the project's configuration file."""
    return subprocess.run(
        [require("amtool", "prometheus-alertmanager"), *arguments],
        capture_output=True,
        text=True,
        check=False,
    )


def routed_to(config: Path, *labels: str) -> str:
    """The receiver(s) `amtool config routes test` picks for an alert with `labels`."""
    result = amtool("config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _alert_labels() -> list[tuple[str, dict[str, str]]]:
    return [
        (rule["alert"], rule["labels"])
        for name in ("alerts.yml", "slo-rules.yml")
        for group in yaml.safe_load((PROMETHEUS_DIR / name).read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_amtool_accepts_the_config() -> None:
    result = amtool("check-config", str(CONFIG))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 inhibit rules" in result.stdout
    assert "2 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=PostgresDown", "severity=critical", "service=postgres"], "pagerduty"),
        (["alertname=BranchLoansApiDown", "severity=critical"], "pagerduty"),
        (["alertname=PostgresDeadlocks", "severity=warning", "service=postgres"], "slack"),
        (["alertname=BranchLoansAvailabilityFastBurn", "severity=critical"], "pagerduty"),
        (["alertname=BranchLoansLatencySlowBurn", "severity=warning"], "slack"),
        (["alertname=SomethingNew", "service=branchloans-api"], "slack"),
        (["alertname=SomethingNew", "severity=info"], "slack"),
    ],
    ids=[
        "critical",
        "critical-without-service",
        "warning",
        "budget-page",
        "budget-ticket",
        "no-severity",
        "unknown-severity",
    ],
)
def test_each_severity_reaches_its_receiver(labels: list[str], receiver: str) -> None:
    assert routed_to(CONFIG, *labels) == receiver


@pytest.mark.parametrize(
    ("alert", "labels"), _alert_labels(), ids=[name for name, _ in _alert_labels()]
)
def test_every_alert_rule_routes_by_its_severity(alert: str, labels: dict[str, str]) -> None:
    assert labels["severity"] in RECEIVER_OF_SEVERITY
    assert labels["service"]

    pairs = [f"{name}={value}" for name, value in {"alertname": alert, **labels}.items()]

    assert routed_to(CONFIG, *pairs) == RECEIVER_OF_SEVERITY[labels["severity"]]


def test_a_critical_alert_inhibits_the_warnings_of_its_own_service_only() -> None:
    config = yaml.safe_load(CONFIG.read_text())

    (rule,) = config["inhibit_rules"]

    assert rule == {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["service"],
    }


def test_alerts_are_grouped_by_name_and_service_and_resolutions_are_sent() -> None:
    config = yaml.safe_load(CONFIG.read_text())

    assert config["route"]["group_by"] == ["alertname", "service"]
    assert config["route"]["repeat_interval"]
    (pagerduty,) = next(r for r in config["receivers"] if r["name"] == "pagerduty")[
        "pagerduty_configs"
    ]
    (slack,) = next(r for r in config["receivers"] if r["name"] == "slack")["slack_configs"]
    assert pagerduty["send_resolved"] is True
    assert slack["send_resolved"] is True


def test_no_secret_is_in_the_config_only_the_files_that_hold_them() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}

    (pagerduty,) = receivers["pagerduty"]["pagerduty_configs"]
    (slack,) = receivers["slack"]["slack_configs"]

    assert pagerduty["routing_key_file"] == "/run/secrets/pagerduty_routing_key"
    assert slack["api_url_file"] == "/run/secrets/slack_webhook_url"
    assert not {"routing_key", "service_key"} & pagerduty.keys()
    assert "api_url" not in slack
    assert "slack_api_url" not in config.get("global", {})
