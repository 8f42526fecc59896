"""The restore drill: back up a live database with the stack's pgBackRest configuration,
write through the API, restore to a moment T into a fresh cluster, and prove that exactly
the writes acknowledged before T came back.

    uv run --no-sync python -m ops.restore_drill --loans 40            # make restore-drill
    uv run --no-sync python -m ops.restore_drill --demo-loans 1000000  # RTO at a million

It needs a PostgreSQL server and pgBackRest installed (Debian: postgresql, pgbackrest), and
runs the clusters as the `postgres` user when started as root. Everything it makes lives in
one temporary directory, removed at the end.
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from branchloans.migrate import asyncpg_dsn, head_revision
from ops.throwaway_cluster import Cluster, as_postgres, free_port, give_to_postgres, run

REPO = Path(__file__).resolve().parents[1]
# The files the compose stack's db image uses, read here unchanged.
PGBACKREST_CONF = REPO / "deploy" / "db" / "pgbackrest.conf"
ARCHIVING_CONF = REPO / "deploy" / "db" / "archiving.conf"
STANZA = "branchloans"
DATABASE = "microloans"
APP_ROLE = "branchloans_app"
# Lifecycles the drill walks loans through, by position: each ends in a different status.
LIFECYCLES: tuple[tuple[str, ...], ...] = (
    (),
    ("approve",),
    ("approve", "disburse"),
    ("approve", "disburse", "repay"),
    ("reject",),
)

Body = dict[str, Any]


@dataclass
class Acknowledged:
    """What the API acknowledged: each loan's last 2xx body and when it arrived, and the
    events read back."""

    loans: dict[str, Body] = field(default_factory=dict)
    at: dict[str, datetime] = field(default_factory=dict)
    events: dict[str, list[Body]] = field(default_factory=dict)

    def record(self, body: Body) -> None:
        """A 2xx answer about a loan, received now."""
        self.loans[body["id"]] = body
        self.at[body["id"]] = datetime.now(UTC)


@dataclass(frozen=True)
class DrillReport:
    """The outcome of one drill."""

    restored: int
    acknowledged: int
    target: datetime
    rpo_seconds: float
    rto_seconds: float
    loans_in_database: int
    problems: tuple[str, ...]

    def line(self) -> str:
        """The one line `make restore-drill` prints."""
        return (
            f"restored {self.restored}/{self.acknowledged} acknowledged loans at"
            f" {self.target.isoformat(timespec='milliseconds')}; RPO {self.rpo_seconds:.1f} s;"
            f" RTO {self.rto_seconds:.1f} s for {self.loans_in_database} loans"
        )


def _query(url: str, sql: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows: list[asyncpg.Record] = await connection.fetch(sql)
            return rows
        finally:
            await connection.close()

    return asyncio.run(fetch())


def _branchloans(*arguments: str, env: dict[str, str]) -> str:
    return run([sys.executable, "-m", "branchloans.cli", *arguments], env)


class RestoreDrill:
    """One drill in a temporary directory; a context manager that removes everything."""

    def __init__(self, *, loans: int, demo_loans: int = 0, archive_timeout: str | None = None):
        self.loans = loans
        self.demo_loans = demo_loans
        self.archive_timeout = archive_timeout
        self._stack = ExitStack()
        self.work = Path(tempfile.mkdtemp(prefix="branchloans-drill-"))
        self.api_key = ""
        # What run() acknowledged before and after the target time, and the restored cluster
        # (still running until the drill ends, so that more checks can be made on it).
        self.before = Acknowledged()
        self.after = Acknowledged()
        self.restored: Cluster | None = None

    def __enter__(self) -> "RestoreDrill":
        self._stack.callback(shutil.rmtree, self.work, ignore_errors=True)
        give_to_postgres(self.work)
        for name in ("repo", "lock", "socket"):
            (self.work / name).mkdir()
            give_to_postgres(self.work / name)
        # Copies the postgres user can read wherever the checkout is.
        shutil.copy(PGBACKREST_CONF, self.work / "pgbackrest.conf")
        shutil.copy(ARCHIVING_CONF, self.work / "archiving.conf")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    # --- the parts ---------------------------------------------------------------------

    def _pgbackrest_env(self, data: Path, port: int) -> dict[str, str]:
        """pgBackRest's settings for one cluster: the stack's file, with this machine's
        paths in the environment variables pgBackRest reads over it."""
        return {
            "PGBACKREST_CONFIG": str(self.work / "pgbackrest.conf"),
            "PGBACKREST_REPO1_PATH": str(self.work / "repo"),
            "PGBACKREST_LOCK_PATH": str(self.work / "lock"),
            "PGBACKREST_PG1_PATH": str(data),
            "PGBACKREST_PG1_PORT": str(port),
            "PGBACKREST_PG1_SOCKET_PATH": str(self.work / "socket"),
        }

    def cluster(self, name: str) -> Cluster:
        """A cluster (not yet created) in the drill's directory, stopped when the drill ends."""
        port = free_port()
        data = self.work / name
        settings = {"archive_timeout": self.archive_timeout} if self.archive_timeout else {}
        cluster = Cluster(
            data, self.work / "socket", port, self._pgbackrest_env(data, port), settings
        )
        self._stack.callback(cluster.stop, "immediate")
        return cluster

    def pgbackrest(self, cluster: Cluster, *arguments: str) -> str:
        """Run pgBackRest for the stanza, as the postgres user, on `cluster`."""
        command = ["pgbackrest", f"--stanza={STANZA}", *arguments]
        return run(as_postgres(command), cluster.env)

    def _app_env(self, cluster: Cluster) -> dict[str, str]:
        owner = cluster.url(DATABASE)
        app = owner.replace("postgres@", f"{APP_ROLE}:drill@", 1)
        return {
            "APP_ENV": "development",
            "AUTH_REQUIRED": "true",
            "LOG_LEVEL": "WARNING",
            "IDEMPOTENCY_PURGE_INTERVAL": "0",
            "DATABASE_URL": app,
            "MIGRATION_DATABASE_URL": owner,
        }

    @contextmanager
    def serving(self, cluster: Cluster) -> Iterator[httpx.Client]:
        """`branchloans serve` on `cluster`, on a free port, until the block ends."""
        port = free_port()
        log = (self.work / f"api-{port}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "branchloans.cli", "serve", "--port", str(port)],
            env={**os.environ, **self._app_env(cluster)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                _wait_until_ready(client, process)
                yield client
        finally:
            process.terminate()
            process.wait(30)
            log.close()

    # --- the drill -----------------------------------------------------------------------

    def run(self) -> DrillReport:
        """Every step of the drill; the report of what came back."""
        source = self.cluster("source")
        source.initdb()
        source.include(self.work / "archiving.conf")
        source.start()
        self.pgbackrest(source, "stanza-create")
        self.pgbackrest(source, "check")
        env = self._app_env(source)
        _branchloans("migrate", env=env)
        if self.demo_loans:
            # As the owner: the bulk load drops and rebuilds the indexes around its COPY.
            owner = {**env, "DATABASE_URL": env["MIGRATION_DATABASE_URL"]}
            _branchloans("demo-data", "--count", str(self.demo_loans), "--seed", "1", env=owner)
        self.api_key = _branchloans(
            "api-keys",
            "create",
            "--name",
            "restore-drill",
            "--scopes",
            "loans:read,loans:write,loans:manage",
            env=env,
        ).strip()
        self.pgbackrest(source, "--type=full", "backup")

        with self.serving(source) as api:
            before = self.before = write_loans(api, self.loans, prefix="before")
            for loan_id in before.loans:
                before.events[loan_id] = _ok(api.get(f"/api/loans/{loan_id}/events"))
            # Requests are sequential: every answer before T was committed before T, and
            # every request after T commits after it.
            time.sleep(0.05)
            # pgBackRest takes milliseconds at most.
            now = datetime.now(UTC)
            target = now.replace(microsecond=now.microsecond // 1000 * 1000)
            time.sleep(0.05)
            after = self.after = write_loans(api, max(1, self.loans // 4), prefix="after")
            for loan_id, body in before.loans.items():
                if body["status"] == "pending":
                    after.record(_ok(api.post(f"/api/loans/{loan_id}/approve")))
            last_write_archived = self._wait_until_archived(source)
        rpo = (last_write_archived - max(after.at.values())).total_seconds()
        # The disaster: the primary is gone, only the repository is left.
        source.stop("immediate")

        started = time.monotonic()
        restored = self.restored = self.cluster("restored")
        restored.data.mkdir(mode=0o700)
        give_to_postgres(restored.data)
        self.pgbackrest(
            restored,
            "--type=time",
            f"--target={target.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}+00",
            "--target-action=promote",
            "restore",
        )
        restored.start()
        _wait_until_promoted(restored)
        with self.serving(restored) as api:
            rto = time.monotonic() - started
            ((count,),) = _query(restored.url(DATABASE), "SELECT count(*) FROM loans")
            restored_loans = sum(
                1 for loan_id, body in before.loans.items() if _read(api, loan_id) == body
            )
            problems = self.verify(api, restored, before, after)
        return DrillReport(
            restored_loans, len(before.loans), target, rpo, rto, count, tuple(problems)
        )

    def _wait_until_archived(self, cluster: Cluster) -> datetime:
        """Wait until the WAL segment holding the last write is in the repository; when."""
        url = cluster.url(DATABASE)
        ((segment,),) = _query(url, "SELECT pg_walfile_name(pg_current_wal_lsn())")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ((archived, archived_at),) = _query(
                url, "SELECT last_archived_wal, last_archived_time FROM pg_stat_archiver"
            )
            if archived is not None and archived[:24] >= segment:
                moment: datetime = archived_at
                return moment
            time.sleep(0.2)
        raise TimeoutError(f"WAL segment {segment} was not archived within 300 s")

    def verify(
        self, api: httpx.Client, cluster: Cluster, before: Acknowledged, after: Acknowledged
    ) -> list[str]:
        """Every way the restored database differs from what was acknowledged before T."""
        problems = []
        for loan_id, body in before.loans.items():
            if (found := _read(api, loan_id)) != body:
                problems.append(f"loan {loan_id}: acknowledged {body}, restored {found}")
            events = api.get(f"/api/loans/{loan_id}/events")
            if events.status_code != 200 or events.json() != before.events.get(loan_id):
                problems.append(f"loan {loan_id}: its events differ from those read before T")
        for loan_id in after.loans.keys() - before.loans.keys():
            if (status := api.get(f"/api/loans/{loan_id}").status_code) != 404:
                problems.append(f"loan {loan_id}, created after T, answers {status}")
        problems += _totals_problems(cluster.url(DATABASE))
        ((revision,),) = _query(cluster.url(DATABASE), "SELECT version_num FROM alembic_version")
        if revision != head_revision():
            problems.append(f"schema at {revision}, not at head {head_revision()}")
        problems += _write_problems(api)
        return problems


def _ok(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()


def _read(api: httpx.Client, loan_id: str) -> Body | None:
    response = api.get(f"/api/loans/{loan_id}")
    return response.json() if response.status_code == 200 else None


def write_loans(api: httpx.Client, count: int, *, prefix: str) -> Acknowledged:
    """Create `count` loans and walk them through LIFECYCLES; what was acknowledged."""
    acknowledged = Acknowledged()
    for number in range(count):
        body = _ok(
            api.post(
                "/api/loans",
                json={
                    "borrower_id": f"drill_{prefix}_{number}",
                    "amount": f"{1000 + number}.50",
                    "currency": "INR",
                },
            )
        )
        for action in LIFECYCLES[number % len(LIFECYCLES)]:
            payload = {"reason": "restore drill"} if action == "reject" else None
            body = _ok(api.post(f"/api/loans/{body['id']}/{action}", json=payload))
        acknowledged.record(body)
    return acknowledged


def _totals_problems(url: str) -> list[str]:
    totals = _query(
        url,
        "SELECT status, currency, sum(loans) AS loans, sum(amount) AS amount FROM loan_totals"
        " GROUP BY status, currency HAVING sum(loans) <> 0 ORDER BY status, currency",
    )
    aggregates = _query(
        url,
        "SELECT status, currency, count(*) AS loans, sum(amount) AS amount FROM loans"
        " GROUP BY status, currency ORDER BY status, currency",
    )
    if [tuple(row) for row in totals] != [tuple(row) for row in aggregates]:
        return [f"loan_totals {list(map(tuple, totals))} != loans {list(map(tuple, aggregates))}"]
    return []


def _write_problems(api: httpx.Client) -> list[str]:
    created = api.post(
        "/api/loans", json={"borrower_id": "drill_restored", "amount": "10.00", "currency": "INR"}
    )
    if created.status_code != 201:
        return [f"the restored API refused a new loan: {created.status_code}"]
    loan_id = created.json()["id"]
    approved = api.post(f"/api/loans/{loan_id}/approve")
    if approved.status_code != 200 or _read(api, loan_id) != approved.json():
        return [f"the restored API did not keep an approval: {approved.status_code}"]
    return []


def _wait_until_ready(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode} before it was ready")
        try:
            if client.get("/readiness", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the API was not ready within 60 s")


def _wait_until_promoted(cluster: Cluster) -> None:
    """Wait until recovery reached the target and the cluster accepts writes."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            ((in_recovery,),) = _query(cluster.url("postgres"), "SELECT pg_is_in_recovery()")
            if not in_recovery:
                return
        except (OSError, asyncpg.PostgresError):
            if not (cluster.data / "postmaster.pid").exists():
                raise RuntimeError(f"recovery failed:\n{cluster.log_tail()}") from None
        time.sleep(0.2)
    raise TimeoutError(f"recovery did not finish within 600 s:\n{cluster.log_tail()}")


def main(argv: list[str] | None = None) -> int:
    """Run one drill, print its line (and any problem); non-zero when a check failed."""
    parser = argparse.ArgumentParser(prog="restore-drill", description=__doc__.split("\n")[0])
    parser.add_argument("--loans", type=int, default=40, help="loans written through the API")
    parser.add_argument(
        "--demo-loans", type=int, default=0, help="synthetic loans bulk-loaded before the backup"
    )
    parser.add_argument(
        "--archive-timeout",
        help="override archive_timeout (e.g. 2s) to finish sooner; the stack's value otherwise",
    )
    args = parser.parse_args(argv)
    with RestoreDrill(
        loans=args.loans, demo_loans=args.demo_loans, archive_timeout=args.archive_timeout
    ) as drill:
        report = drill.run()
    for problem in report.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print(report.line())
    return 1 if report.problems or report.restored != report.acknowledged else 0


if __name__ == "__main__":
    sys.exit(main())
