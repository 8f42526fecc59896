"""Parts of the alert drill (test_alert_drill.py): a PostgreSQL cluster of its own, a webhook
receiver standing in for Slack and PagerDuty, and the project's Prometheus and Alertmanager
files with the drill's short timings."""

import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import ALERTMANAGER_DIR, PROMETHEUS_DIR, free_port

# What the drill shortens; the files keep the production values.
DRILL_INTERVAL = "1s"
# The long transaction alert's threshold, 300 s in alerts.yml, in the drill.
DRILL_LONG_TRANSACTION_SECONDS = 3


def _postgres_bindir() -> Path:
    """The newest PostgreSQL server's bin directory (Debian keeps it off the PATH)."""
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    initdb = debian[-1] if debian else shutil.which("initdb")
    assert initdb, "no PostgreSQL server: apt-get install postgresql (.ci/run installs it)"
    return Path(initdb).parent


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free loopback port, with pg_stat_statements loaded.

    Run as the `postgres` user when the tests run as root, which initdb refuses to be.
    """

    def __init__(self) -> None:
        self.bindir = _postgres_bindir()
        # Not under pytest's private temp dir, which the postgres user cannot enter.
        self.directory = Path(tempfile.mkdtemp(prefix="branchloans-drill-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self.as_owner, *command], check=True, capture_output=True, text=True, timeout=120
        )

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for `database` on this cluster."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """A libpq URL for `database` on this cluster (psql, postgres_exporter)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def init(self) -> None:
        """initdb with trust authentication for local connections only."""
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            " -c shared_preload_libraries=pg_stat_statements"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "start",
            "--wait",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "postgres.log"),
        )

    def stop(self) -> None:
        """Stop the server, disconnecting every client (what an outage looks like to them)."""
        self._run(str(self.bindir / "pg_ctl"), "stop", "--wait", "-m", "fast", "-D", str(self.data))

    def remove(self) -> None:
        """Stop the server if it runs, and delete the cluster."""
        subprocess.run(
            [
                *self.as_owner,
                str(self.bindir / "pg_ctl"),
                "stop",
                "-m",
                "immediate",
                "-D",
                self.data,
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class Notification:
    """One webhook call: which stand-in it reached (`slack` or `pagerduty`) and its JSON."""

    route: str
    body: dict[str, Any]
    received: float  # time.monotonic()

    @property
    def title(self) -> str:
        """The PagerDuty summary or the Slack title, as alertmanager.yml's templates make them."""
        if self.route == "pagerduty":
            summary: str = self.body["payload"]["summary"]
            return summary
        title: str = self.body["attachments"][0]["title"]
        return title

    @property
    def alertname(self) -> str:
        """The alert the notification is about: `Name: summary` or `[STATUS] Name (service)`."""
        if self.route == "pagerduty":
            return self.title.split(":", 1)[0]
        return self.title.split()[1]

    @property
    def resolved(self) -> bool:
        """Whether this is the resolution rather than the alert."""
        if self.route == "pagerduty":
            return bool(self.body["event_action"] == "resolve")
        return bool(self.body["attachments"][0]["title"].startswith("[RESOLVED]"))


class WebhookReceiver:
    """An HTTP server on loopback recording what Alertmanager posts to /slack and /pagerduty.

    Written here because it only needs to record JSON bodies: no Slack or PagerDuty client
    library runs the receiving side.
    """

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        received = self._received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received(self.path.strip("/"), body)
                self.send_response(202 if self.path == "/pagerduty" else 200)
                self.end_headers()
                self.wfile.write(b'{"status": "success"}' if self.path == "/pagerduty" else b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test prints what it received."""

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _received(self, route: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.notifications.append(Notification(route, body, time.monotonic()))

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(
        self, matches: Callable[[Notification], bool], seconds: float
    ) -> Notification | None:
        """The first notification that `matches`, waiting up to `seconds` for it."""
        deadline = time.monotonic() + seconds
        while True:
            with self._lock:
                found = next((n for n in self.notifications if matches(n)), None)
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def about(self, alertname: str) -> list[Notification]:
        """Every notification so far about `alertname`."""
        with self._lock:
            return [n for n in self.notifications if n.alertname == alertname]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def write_alertmanager_config(directory: Path, receiver: str, routing_key: str) -> Path:
    """deploy/alertmanager/alertmanager.yml, its secret files and PagerDuty's address on
    loopback and its grouping waits shortened; every route and receiver as they are."""
    config = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text())
    secrets = directory / "secrets"
    secrets.mkdir(parents=True)
    # What Compose mounts from the operator's environment, newline and all as `echo` writes it.
    (secrets / "pagerduty_routing_key").write_text(f"{routing_key}\n")
    (secrets / "slack_webhook_url").write_text(f"{receiver}/slack\n")
    for node in _walk(config):
        for key, value in node.items():
            if isinstance(value, str) and value.startswith("/run/secrets/"):
                node[key] = str(secrets / value.removeprefix("/run/secrets/"))
    config["global"]["pagerduty_url"] = f"{receiver}/pagerduty"
    route = config["route"]
    route["group_wait"] = route["group_interval"] = DRILL_INTERVAL
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_prometheus_config(directory: Path, targets: dict[str, str], alertmanager: str) -> Path:
    """deploy/prometheus with loopback targets, 1 s scrapes and evaluations, no `for:` waits
    and the long transaction threshold in seconds."""
    shutil.copytree(PROMETHEUS_DIR, directory)
    for job, target in targets.items():
        (directory / "targets" / f"{job}.yml").write_text(yaml.safe_dump([{"targets": [target]}]))
    (directory / "targets" / "alertmanager.yml").write_text(
        yaml.safe_dump([{"targets": [alertmanager]}])
    )
    config = yaml.safe_load((directory / "prometheus.yml").read_text())
    config["global"] |= {
        "scrape_interval": DRILL_INTERVAL,
        "scrape_timeout": DRILL_INTERVAL,
        "evaluation_interval": DRILL_INTERVAL,
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    rules = yaml.safe_load((directory / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
            if rule["alert"] == "PostgresLongTransaction":
                assert rule["expr"].endswith("> 300"), rule["expr"]
                rule["expr"] = rule["expr"].replace("> 300", f"> {DRILL_LONG_TRANSACTION_SECONDS}")
    (directory / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    return directory / "prometheus.yml"
