"""The alert drill (`make alert-drill`): alerts reach a person, on real processes on loopback.

A PostgreSQL cluster of its own (pg_stat_statements needs shared_preload_libraries), the API
on it, postgres_exporter with the project's queries, Prometheus with the project's rules and
Alertmanager with the project's configuration, its Slack and PagerDuty addresses pointed at a
local webhook receiver. Timings are shortened (see drill.py); routes and rules are the files'.
"""

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from branchloans.migrate import asyncpg_dsn, create_database_if_missing, upgrade_to_head
from tests.deploy.drill import (
    PostgresCluster,
    WebhookReceiver,
    write_alertmanager_config,
    write_prometheus_config,
)
from tests.deploy.processes import Processes, wait_for
from tests.deploy.support import (
    POSTGRES_EXPORTER_DIR,
    alert_signals,
    dashboard_queries,
    free_port,
    require,
)

BIN = Path(sys.executable).parent
STARTUP_SECONDS = 60
# How long an alert may take from the event to the receiver before the drill fails; the
# figures measured are printed (a few seconds with the drill's 1 s intervals).
DELIVERY_SECONDS = 60
DATABASE = "branchloans"


@dataclass(frozen=True)
class Drill:
    """The running drill."""

    cluster: PostgresCluster
    receiver: WebhookReceiver
    prometheus: str
    alertmanager: str
    routing_key: str
    processes: Processes

    def query(self, expression: str, seconds: float = 30) -> list[dict[str, Any]]:
        """The result of a PromQL query, once it has one (or empty after `seconds`)."""
        deadline = time.monotonic() + seconds
        while True:
            body = httpx.post(f"{self.prometheus}/api/v1/query", data={"query": expression}).json()
            assert body["status"] == "success", body
            result: list[dict[str, Any]] = body["data"]["result"]
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


async def _prepare_database(url: str) -> None:
    await create_database_if_missing(url)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await connection.close()


def _start(
    processes: Processes, root: Path, cluster: PostgresCluster, receiver: str, routing_key: str
) -> tuple[str, str]:
    """The API, postgres_exporter, Alertmanager and Prometheus; Prometheus's and
    Alertmanager's URLs."""
    api_port, metrics_port, exporter_port, alertmanager_port, prometheus_port = (
        free_port() for _ in "12345"
    )
    api_env = {
        **os.environ,
        "DATABASE_URL": cluster.url(DATABASE),
        "APP_ENV": "staging",
        "METRICS_CACHE_SECONDS": "0",
        "METRICS_PORT": str(metrics_port),
        "PYTHONUNBUFFERED": "1",
    }
    processes.start(
        "api",
        [str(BIN / "branchloans"), "serve", "--host", "127.0.0.1", "--port", str(api_port)],
        api_env,
    )
    processes.start(
        "postgres-exporter",
        [
            require("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
            f"--web.listen-address=127.0.0.1:{exporter_port}",
            f"--extend.query-path={POSTGRES_EXPORTER_DIR / 'queries.yaml'}",
        ],
        {"DATA_SOURCE_NAME": cluster.dsn(DATABASE)},
    )
    alertmanager_config = write_alertmanager_config(root / "alertmanager", receiver, routing_key)
    processes.start(
        "alertmanager",
        [
            require("prometheus-alertmanager", "prometheus-alertmanager"),
            f"--config.file={alertmanager_config}",
            f"--storage.path={root / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{alertmanager_port}",
            # No high-availability peers: nothing listens on the fixed cluster port 9094.
            "--cluster.listen-address=",
        ],
    )
    prometheus_config = write_prometheus_config(
        root / "prometheus",
        {"api": f"127.0.0.1:{metrics_port}", "postgres": f"127.0.0.1:{exporter_port}"},
        f"127.0.0.1:{alertmanager_port}",
    )
    processes.start(
        "prometheus",
        [
            require("prometheus", "prometheus"),
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={root / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
    )
    for name, url in [
        ("the API", f"http://127.0.0.1:{api_port}/readiness"),
        ("postgres_exporter", f"http://127.0.0.1:{exporter_port}/metrics"),
        ("Alertmanager", f"http://127.0.0.1:{alertmanager_port}/-/ready"),
        ("Prometheus", f"http://127.0.0.1:{prometheus_port}/-/ready"),
    ]:
        wait_for(
            name, lambda url=url: httpx.get(url).status_code == 200, STARTUP_SECONDS, processes
        )
    return f"http://127.0.0.1:{prometheus_port}", f"http://127.0.0.1:{alertmanager_port}"


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """Everything running, stopped and the cluster deleted after the module's tests."""
    root = tmp_path_factory.mktemp("drill")
    (root / "logs").mkdir()
    processes = Processes(root / "logs")
    cluster = PostgresCluster()
    routing_key = secrets.token_hex(16)
    try:
        cluster.init()
        cluster.start()
        asyncio.run(_prepare_database(cluster.url(DATABASE)))
        upgrade_to_head(cluster.url(DATABASE))
        with WebhookReceiver() as receiver:
            prometheus, alertmanager = _start(processes, root, cluster, receiver.url, routing_key)
            yield Drill(cluster, receiver, prometheus, alertmanager, routing_key, processes)
    finally:
        processes.stop_all()
        cluster.remove()


@pytest.mark.parametrize(
    "expression",
    [expression for _, expression in dashboard_queries("postgres")],
    ids=[name for name, _ in dashboard_queries("postgres")],
)
def test_every_database_dashboard_query_returns_data(drill: Drill, expression: str) -> None:
    assert drill.query(expression.replace("$__rate_interval", "1m")), expression


@pytest.mark.parametrize(
    "signal",
    [signal for _, signal in alert_signals("postgres")],
    ids=[name for name, _ in alert_signals("postgres")],
)
def test_every_database_alert_watches_a_signal_with_data(drill: Drill, signal: str) -> None:
    assert drill.query(signal), signal


def test_the_top_statements_include_the_apis_own(drill: Drill) -> None:
    statements = drill.query('pg_statements_top_total_time_seconds{job="postgres"}')

    assert any("loan" in series["metric"]["statement"] for series in statements), statements


def test_a_database_outage_pages_and_its_end_resolves_the_page(drill: Drill) -> None:
    # The API answering, and Prometheus seeing it, before the outage.
    assert drill.query('database_up{job="branchloans-api"} == 1')
    receiver = drill.receiver

    stopped = time.monotonic()
    drill.cluster.stop()
    try:
        page = receiver.wait_for(
            lambda n: (
                n.route == "pagerduty"
                and n.alertname == "BranchLoansDatabaseUnreachable"
                and not n.resolved
            ),
            DELIVERY_SECONDS,
        )
    finally:
        drill.cluster.start()
    restarted = time.monotonic()
    assert page is not None, drill.processes.describe()
    dedup_key = page.body["dedup_key"]
    resolution = receiver.wait_for(
        lambda n: n.route == "pagerduty" and n.resolved and n.body["dedup_key"] == dedup_key,
        DELIVERY_SECONDS,
    )

    print(  # noqa: T201 (the figures the drill measures)
        f"\nalert drill: database stopped -> page received in {page.received - stopped:.1f} s;"
        f" database started -> resolution received in "
        f"{(resolution.received if resolution else restarted) - restarted:.1f} s"
    )
    assert page.body["routing_key"] == drill.routing_key
    assert page.body["payload"]["severity"] == "critical"
    assert page.body["payload"]["custom_details"]["service"] == "branchloans-api"
    assert resolution is not None, drill.processes.describe()
    assert not [
        n for n in receiver.notifications if n.route == "slack" and "Database" in n.alertname
    ]


def test_a_long_transaction_warns_on_slack_only(drill: Drill) -> None:
    receiver = drill.receiver
    psql = subprocess.Popen(
        [require("psql", "postgresql-client"), "-X", "-q", "--dbname", drill.cluster.dsn(DATABASE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert psql.stdin is not None
    began = time.monotonic()
    psql.stdin.write("BEGIN; SELECT txid_current();\n")
    psql.stdin.flush()
    try:
        warning = receiver.wait_for(
            lambda n: n.alertname == "PostgresLongTransaction" and not n.resolved,
            DELIVERY_SECONDS,
        )
    finally:
        psql.stdin.close()
        psql.wait(timeout=10)
    resolution = receiver.wait_for(
        lambda n: n.alertname == "PostgresLongTransaction" and n.resolved, DELIVERY_SECONDS
    )

    assert warning is not None, drill.processes.describe()
    print(  # noqa: T201 (the figures the drill measures)
        f"\nalert drill: transaction opened -> warning received in {warning.received - began:.1f} s"
        " (threshold 3 s in the drill)"
    )
    assert warning.route == "slack"
    assert "MONITORING.md#postgreslongtransaction" in warning.body["attachments"][0]["text"]
    assert resolution is not None
    assert resolution.route == "slack"
    assert {n.route for n in receiver.about("PostgresLongTransaction")} == {"slack"}


def test_a_critical_alert_holds_back_the_warnings_of_its_own_service_only(drill: Drill) -> None:
    # Posted to Alertmanager as Prometheus would: the inhibition is alertmanager.yml's own.
    def alert(severity: str, service: str) -> dict[str, Any]:
        name = f"Drill{severity.title()}"
        return {"labels": {"alertname": name, "severity": severity, "service": service}}

    response = httpx.post(
        f"{drill.alertmanager}/api/v2/alerts",
        json=[
            alert("critical", "postgres"),
            alert("warning", "postgres"),
            alert("warning", "branchloans-api"),
        ],
    )
    assert response.status_code == 200
    other_service = drill.receiver.wait_for(
        lambda n: n.alertname == "DrillWarning" and "(branchloans-api)" in n.title,
        DELIVERY_SECONDS,
    )
    page = drill.receiver.wait_for(lambda n: n.alertname == "DrillCritical", DELIVERY_SECONDS)
    # The held-back warning's group was due at the same time as the one delivered.
    time.sleep(3)

    assert other_service is not None
    assert other_service.route == "slack"
    assert page is not None
    assert page.route == "pagerduty"
    assert [n.title for n in drill.receiver.about("DrillWarning")] == [other_service.title]
