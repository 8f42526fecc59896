"""Helpers for the deployment tests: env files, Compose interpolation, the nginx template."""

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# The nginx template's helpers live with the rollout drill, which renders it too.
from ops.nginx_config import (  # noqa: F401 - re-exported for the deployment tests
    NGINX_TEMPLATE,
    render_template,
    template_variables,
    write_nginx_config,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
ENV_DIR = REPO / "envs"
ENVIRONMENTS = ("dev", "staging", "prod")
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
ALERTMANAGER_DIR = REPO / "deploy" / "alertmanager"
POSTGRES_EXPORTER_DIR = REPO / "deploy" / "postgres-exporter"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "branchloans.json"
# The dashboard's last row, whose panels read the backup exporters rather than the API.
BACKUP_ROW = "Backups"

# What postgres_exporter serves that the dashboard and the alerts read: its built-in
# collectors and deploy/postgres-exporter/queries.yaml.
EXPORTER_METRICS = {
    "pg_up",
    "pg_settings_max_connections",
    "pg_stat_activity_count",
    "pg_stat_activity_max_tx_duration",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    "pg_stat_database_blks_hit",
    "pg_stat_database_blks_read",
    "pg_stat_database_deadlocks",
    "pg_stat_archiver_archived_count",
    "pg_stat_archiver_failed_count",
    "pg_stat_archiver_last_archive_age",
    "pg_replication_replicas_connected",
    "pg_replication_replicas_max_replay_lag_seconds",
    "pg_statements_top_total_time_seconds",
    "up",
}
# The secrets production takes from the operator's shell, never from its env file.
PRODUCTION_SECRETS = (
    "POSTGRES_PASSWORD",
    "API_DB_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "CURSOR_SIGNING_KEYS",
)

_ENV_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME and $$.
_COMPOSE_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose env file; blank lines and # comments are skipped."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        if match is None:
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {line!r}")
        values[match["key"]] = match["value"]
    return values


class MissingVariableError(LookupError):
    """A ${NAME:?message} variable was unset or empty, as Compose refuses it."""


def interpolate_string(text: str, env: dict[str, str], used: set[str]) -> str:
    """Compose's interpolation of one string; names read are added to `used`."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        used.add(name)
        value = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and missing:
            raise MissingVariableError(f"{name}: {arg}")
        if op in (":-", "-") and missing:
            return arg
        if value is None:
            raise KeyError(f"{name} is used but not defined")
        return value

    return _COMPOSE_VARIABLE.sub(substitute, text)


def interpolate(node: Any, env: dict[str, str], used: set[str]) -> Any:
    """Every string in a loaded Compose document interpolated with `env`."""
    if isinstance(node, str):
        return interpolate_string(node, env, used)
    if isinstance(node, dict):
        return {key: interpolate(value, env, used) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env, used) for item in node]
    return node


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require(binary: str, package: str) -> str:
    """The path of `binary`; the test fails (CI installs it, so it is never skipped) without it."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{binary} is missing: apt-get install {package} (.ci/run installs it)")
    return path


def api_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's panels above the Backups row: those drawn from the API's metrics."""
    panels: list[dict[str, Any]] = dashboard["panels"]
    (row,) = [panel for panel in panels if panel["type"] == "row" and panel["title"] == BACKUP_ROW]
    return [panel for panel in panels if panel["gridPos"]["y"] < row["gridPos"]["y"]]


def dashboard_queries(job: str) -> list[tuple[str, str]]:
    """(panel title and refId, PromQL) of each query above the Backups row that reads `job`.

    The rows below (backups, the loan book) need a backup or a repayment to have data; their
    own tests check the series they read.
    """
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in api_panels(dashboard)
        for target in panel["targets"]
        if f'job="{job}"' in target["expr"]
    ]


def alert_signals(job: str) -> list[tuple[str, str]]:
    """Each alert on `job` without its threshold: what it watches, which must have data."""
    alerts = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    signals = []
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if f'job="{job}"' not in rule["expr"]:
                continue
            match = re.fullmatch(r"(?s)(.+?)\s*(?:==|!=|>=|<=|>|<)\s*[0-9.]+\s*", rule["expr"])
            assert match, f"{rule['alert']}: not `signal comparison threshold`"
            signals.append((rule["alert"], match[1]))
    return signals


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    """promtool run in deploy/prometheus, where the config's relative paths start."""
    return subprocess.run(
        [require("promtool", "prometheus"), *arguments],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
