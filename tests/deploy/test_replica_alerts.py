"""The read replica's alert rules (deploy/prometheus/replica-alerts.yml): checked and
unit-tested by promtool, with runbook entries, and the lag alert fired for real: replay paused
on a streaming replica of the test server, seen by postgres_exporter with the project's
queries and by Prometheus running the project's rules."""

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import make_url

from branchloans.migrate import create_database_if_missing, drop_database
from tests.deploy.drill import write_prometheus_config
from tests.deploy.processes import Processes, wait_for
from tests.deploy.support import (
    POSTGRES_EXPORTER_DIR,
    PROMETHEUS_DIR,
    REPO,
    free_port,
    promtool,
    require,
)
from tests.streaming_replica import StreamingReplica, query, server_files, streaming_replica
from tests.support import SERVER_URL, throwaway_database_url

ALERTS = ("PostgresReplicaLagging", "BranchLoansReplicaUnreachable", "BranchLoansReplicaCutOff")
RUNBOOK = "https://github.com/branchloans/branch-loans-api/blob/main/MONITORING.md"
STARTUP_SECONDS = 60
# The lag alert's threshold, 30 s in replica-alerts.yml, in the end-to-end test.
TEST_LAG_SECONDS = 3
# Bounds, not expectations: with 1 s scrapes and evaluations the alert fires a few seconds
# past the threshold, and resolves about as fast.
ALERT_SECONDS = 60


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "replica-alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_prometheus_loads_the_replica_rules() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())

    assert "replica-alerts.yml" in config["rule_files"]


def test_the_replica_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "replica-alerts.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", ALERTS)
def test_every_replica_alert_has_a_unit_test_that_fires_it(alert: str) -> None:
    unit_tests = yaml.safe_load((PROMETHEUS_DIR / "replica-alerts.test.yml").read_text())

    assert any(
        check["alertname"] == alert and check["exp_alerts"]
        for test in unit_tests["tests"]
        for check in test["alert_rule_test"]
    )


def test_neither_replica_alert_pages() -> None:
    # The API reads from the primary meanwhile: no request fails for a lagging or lost replica.
    assert {rule["labels"]["severity"] for rule in _rules().values()} == {"warning"}


@pytest.mark.parametrize("alert", ALERTS)
def test_every_replica_alert_links_its_runbook_line_in_monitoring_md(alert: str) -> None:
    headings = [
        line.lstrip("#").strip()
        for line in (REPO / "MONITORING.md").read_text().splitlines()
        if line.startswith("#")
    ]
    # GitHub's anchor of a heading: lower case, spaces to hyphens, punctuation dropped.
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}

    link = _rules()[alert]["annotations"]["runbook_url"]

    assert link.startswith(f"{RUNBOOK}#")
    assert link.removeprefix(f"{RUNBOOK}#") in anchors


@dataclass(frozen=True)
class LagWatch:
    """A standby of the test server, a database on the server to write to, and Prometheus
    reading postgres_exporter on the server."""

    replica: StreamingReplica
    database: str
    prometheus: str
    processes: Processes

    def write(self) -> None:
        """One committed write on the primary: WAL for the standby to receive."""
        query(self.database, "INSERT INTO ticks DEFAULT VALUES")

    def alerts(self) -> list[dict[str, Any]]:
        """PostgresReplicaLagging as Prometheus evaluates it now (firing or not at all)."""
        body = httpx.get(f"{self.prometheus}/api/v1/alerts").json()
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "PostgresReplicaLagging"]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(False) + "?sslmode=disable"


def _prometheus_config(root: Path, exporter: str) -> Path:
    """The project's Prometheus files with 1 s timings, the lag threshold lowered to
    TEST_LAG_SECONDS and no `for:` wait; no Alertmanager answers (none is needed here)."""
    config = write_prometheus_config(
        root / "prometheus", {"postgres": exporter}, f"127.0.0.1:{free_port()}"
    )
    rules_file = config.parent / "replica-alerts.yml"
    rules = yaml.safe_load(rules_file.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
            if rule["alert"] == "PostgresReplicaLagging":
                assert rule["expr"].endswith("> 30"), rule["expr"]
                rule["expr"] = rule["expr"].replace("> 30", f"> {TEST_LAG_SECONDS}")
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    return config


@pytest.fixture(scope="module")
def lag_watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LagWatch]:
    """Everything running; stopped, the standby and the database removed after.

    Only a server on this machine can be copied into a standby (`.ci/run`'s, a developer's);
    GitHub's job runs Postgres in a service container, where the module is skipped.
    """
    if server_files(SERVER_URL) is None:
        pytest.skip("the test server's pg_hba.conf and pg_basebackup are not on this machine")
    root = tmp_path_factory.mktemp("replica-lag")
    (root / "logs").mkdir()
    processes = Processes(root / "logs")
    database = throwaway_database_url("replica_lag")
    asyncio.run(create_database_if_missing(database))
    query(database, "CREATE TABLE ticks (id bigint GENERATED ALWAYS AS IDENTITY)")
    exporter_port, prometheus_port = free_port(), free_port()
    try:
        with streaming_replica(SERVER_URL) as replica:
            processes.start(
                "postgres-exporter",
                [
                    require("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
                    f"--web.listen-address=127.0.0.1:{exporter_port}",
                    f"--extend.query-path={POSTGRES_EXPORTER_DIR / 'queries.yaml'}",
                ],
                {"DATA_SOURCE_NAME": _libpq(database)},
            )
            config = _prometheus_config(root, f"127.0.0.1:{exporter_port}")
            processes.start(
                "prometheus",
                [
                    require("prometheus", "prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={root / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=error",
                ],
            )
            prometheus = f"http://127.0.0.1:{prometheus_port}"
            wait_for(
                "Prometheus",
                lambda: httpx.get(f"{prometheus}/-/ready").status_code == 200,
                STARTUP_SECONDS,
                processes,
            )
            yield LagWatch(replica, database, prometheus, processes)
    finally:
        processes.stop_all()
        asyncio.run(drop_database(database))


def _streaming(watch: LagWatch) -> bool:
    """Whether Prometheus has scraped the primary with its one streaming replica."""
    body = httpx.get(
        f"{watch.prometheus}/api/v1/query",
        params={"query": 'pg_replication_replicas_connected{job="postgres"} == 1'},
    ).json()
    return bool(body["data"]["result"])


def test_replay_paused_on_a_real_standby_fires_the_lag_alert_and_resuming_resolves_it(
    lag_watch: LagWatch,
) -> None:
    processes = lag_watch.processes
    # The standby streams and has caught up: one replica, no lag worth an alert.
    wait_for("the standby in pg_stat_replication", lambda: _streaming(lag_watch), 30, processes)
    assert lag_watch.alerts() == []

    lag_watch.replica.sql("SELECT pg_wal_replay_pause()")

    def lagging() -> bool:
        lag_watch.write()  # the standby reports its replay position as WAL arrives
        return any(alert["state"] == "firing" for alert in lag_watch.alerts())

    wait_for("PostgresReplicaLagging", lagging, ALERT_SECONDS, processes)
    (alert,) = lag_watch.alerts()
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["service"] == "postgres"
    assert float(alert["value"]) > TEST_LAG_SECONDS

    lag_watch.replica.sql("SELECT pg_wal_replay_resume()")

    def caught_up() -> bool:
        lag_watch.write()
        return lag_watch.alerts() == []

    wait_for("PostgresReplicaLagging resolved", caught_up, ALERT_SECONDS, processes)
