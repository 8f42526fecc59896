"""The rollout drill: nginx, with the project's template, in front of two API instances on
loopback, and traffic through it the whole time, while each instance in turn is replaced as a
rolling deploy replaces a pod: SIGTERM (it drains and exits), a new one on its port, ready.

    uv run --no-sync python -m ops.rollout_drill --seconds 60 --rate 200   # make rollout-drill

The load is reads (a list page, a loan by id) and creates, each create sent with an
`Idempotency-Key` and retried with the same key on any failure, as a well-behaved client
does. Every answer that is not the expected one counts as failed, retries included. At the
end each acknowledged create must be in the database exactly once. The instances get the
drain settings the Kubernetes manifests give the pods (deploy/k8s/base/kustomization.yaml).

It needs PostgreSQL (a database of its own on the server DATABASE_URL names, dropped at the
end) and nginx (Debian: nginx).
"""

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import signal
import ssl
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import make_url

from branchloans.certs import ensure_certificates
from branchloans.migrate import asyncpg_dsn, create_database_if_missing, drop_database
from ops.api_instance import Instance
from ops.nginx_config import loopback_values, running_nginx
from ops.throwaway_cluster import free_port, run

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZATION = REPO / "deploy" / "k8s" / "base" / "kustomization.yaml"
DRAIN_SETTINGS = ("SHUTDOWN_DRAIN_SECONDS", "SHUTDOWN_GRACE_SECONDS")
_LITERAL = re.compile(r"^\s*- (SHUTDOWN_[A-Z_]+)=(\S+)$", re.MULTILINE)
# The server the drill makes its database on.
SERVER_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
# One address sends all the load: nginx's per-client write limit would refuse most of it.
DRILL_WRITE_RATE = "100000r/s"
# Backoff of a create's retries with the same key; the last failure gives up.
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
BORROWER_PREFIX = "rollout_"


def pod_drain_settings() -> dict[str, str]:
    """SHUTDOWN_DRAIN_SECONDS and SHUTDOWN_GRACE_SECONDS as the API's pods get them."""
    # The configMapGenerator's `- NAME=value` literals (tests/deploy/test_k8s_rollout.py reads
    # the file as YAML and holds the manifests to the same values).
    values = dict(_LITERAL.findall(KUSTOMIZATION.read_text()))
    return {name: values[name] for name in DRAIN_SETTINGS}


@dataclass
class Tally:
    """What the load saw: requests sent, answers that were not the expected one, creates
    acknowledged (each borrower, unique to its create, -> the loan id answered) and loan ids
    to read back."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)
    resent_creates: int = 0
    # Seconds from each SIGTERM to the process's exit.
    stops: list[float] = field(default_factory=list)
    loan_ids: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        """One request that did not get the answer it should have."""
        self.failures.append(what)


@dataclass(frozen=True)
class DrillReport:
    """The outcome of one drill."""

    requests: int
    failed: int
    creates: int
    resent_creates: int
    passed_on: int
    posts_passed_on: int
    replaced: int
    longest_stop: float
    seconds: float
    problems: tuple[str, ...]

    def line(self) -> str:
        """The line `make rollout-drill` prints."""
        creates = (
            "every acknowledged create present once"
            if not self.problems
            else f"{len(self.problems)} problems with acknowledged creates"
        )
        return f"{self.requests} requests, {self.failed} failed, {creates}"

    def details(self) -> str:
        """The figures behind the line."""
        return (
            f"{self.creates} creates acknowledged ({self.resent_creates} needed a retry);"
            f" nginx passed {self.passed_on} requests on to the other instance"
            f" ({self.posts_passed_on} of them keyed POSTs);"
            f" {self.replaced} instances replaced in {self.seconds:.1f} s, the longest"
            f" {self.longest_stop:.1f} s from SIGTERM to exit"
        )


class RolloutDrill:
    """One drill in a temporary directory; a context manager that removes everything."""

    def __init__(
        self,
        *,
        seconds: float,
        rate: float,
        clients: int,
        max_requests: int,
        server_url: str = SERVER_URL,
    ) -> None:
        self.seconds = seconds
        self.rate = rate
        self.clients = clients
        self.max_requests = max_requests
        self.work = Path(tempfile.mkdtemp(prefix="branchloans-rollout-"))
        self.database_url = (
            make_url(server_url)
            .set(database=f"branchloans_rollout_{uuid.uuid4().hex[:8]}")
            .render_as_string(hide_password=False)
        )
        self._stack = ExitStack()
        self.instances: list[Instance] = []
        self.https_port = 0
        self.edge_log = self.work / "nginx" / "nginx.log"
        self.api_key = ""
        self.tally = Tally()

    def __enter__(self) -> "RolloutDrill":
        self._stack.callback(shutil.rmtree, self.work, ignore_errors=True)
        asyncio.run(create_database_if_missing(self.database_url))
        self._stack.callback(lambda: asyncio.run(drop_database(self.database_url)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _env(self) -> dict[str, str]:
        return {
            "APP_ENV": "development",
            "AUTH_REQUIRED": "true",
            "LOG_LEVEL": "WARNING",
            "IDEMPOTENCY_PURGE_INTERVAL": "0",
            "DATABASE_URL": self.database_url,
            "TRUSTED_PROXIES": "127.0.0.1",
            # One key drives the whole drill, at up to --rate through a single instance while
            # the other is replaced: the per-key rate limit would measure itself, not the rollout.
            "KEY_RATE_LIMIT": "0",
            **pod_drain_settings(),
        }

    def _branchloans(self, *arguments: str) -> str:
        return run([sys.executable, "-m", "branchloans.cli", *arguments], self._env())

    def _start_edge(self) -> None:
        certs = ensure_certificates(self.work / "certs").paths.directory
        self.https_port = free_port()
        values = loopback_values(
            certs,
            [f"127.0.0.1:{instance.port}" for instance in self.instances],
            https_port=self.https_port,
            http_port=free_port(),
        )
        values |= {"NGINX_WRITE_RATE": DRILL_WRITE_RATE, "NGINX_WRITE_BURST": "1000"}
        self.edge_log = self._stack.enter_context(running_nginx(self.work / "nginx", values))

    def _trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.work / "certs" / "ca.crt")

    def run(self) -> DrillReport:
        """Every step of the drill; the report of what the load saw and the database holds."""
        self._branchloans("migrate")
        self.api_key = self._branchloans(
            "api-keys", "create", "--name", "rollout-drill", "--scopes", "loans:read,loans:write"
        ).strip()
        logs = self.work / "logs"
        logs.mkdir()
        self.instances = [Instance(name, free_port(), self._env(), logs) for name in ("one", "two")]
        for instance in self.instances:
            self._stack.callback(instance.kill)
            instance.start()
        for instance in self.instances:
            instance.wait_until_ready()
        self._start_edge()
        started = time.monotonic()
        asyncio.run(self._drive())
        elapsed = time.monotonic() - started
        for instance in self.instances:
            instance.stop()
        problems = asyncio.run(self._check_creates())
        passed_on = self._passed_on()
        return DrillReport(
            requests=self.tally.requests,
            failed=len(self.tally.failures),
            creates=len(self.tally.acknowledged),
            resent_creates=self.tally.resent_creates,
            passed_on=len(passed_on),
            posts_passed_on=passed_on.count("POST"),
            replaced=len(self.tally.stops),
            longest_stop=max(self.tally.stops),
            seconds=elapsed,
            problems=tuple(problems),
        )

    async def _drive(self) -> None:
        """The load, from before the first replacement until after the last."""
        done = asyncio.Event()
        async with httpx.AsyncClient(
            base_url=f"https://localhost:{self.https_port}",
            verify=self._trust(),
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=60,
            limits=httpx.Limits(max_connections=self.clients),
        ) as client:
            # A loan to read before the load has created any.
            if not await self._create(client):
                raise RuntimeError(f"the first create failed: {self.tally.failures}")
            load = [asyncio.create_task(self._client(client, n, done)) for n in range(self.clients)]
            try:
                # A steady start, each instance replaced in turn, a steady end.
                settle = self.seconds / (2 * len(self.instances) + 2)
                await asyncio.sleep(settle)
                for instance in self.instances:
                    await asyncio.to_thread(self._replace, instance)
                    await asyncio.sleep(settle)
            finally:
                exhausted = self.tally.requests >= self.max_requests
                done.set()
                await asyncio.gather(*load)
        if exhausted:
            self.tally.fail(f"the load reached {self.max_requests} requests before the drill ended")

    def _replace(self, instance: Instance) -> None:
        """Replace one instance as a rolling deploy replaces a pod."""
        signalled = time.monotonic()
        exit_code = instance.stop()
        self.tally.stops.append(time.monotonic() - signalled)
        # uvicorn raises the signal again once it has shut down: -15 is a clean exit too.
        if exit_code not in (0, -signal.SIGTERM):
            self.tally.fail(f"{instance.name} exited with {exit_code} after SIGTERM")
        instance.start()
        instance.wait_until_ready()
        instance.wait_until_serving_traffic()

    async def _client(self, client: httpx.AsyncClient, number: int, done: asyncio.Event) -> None:
        """One client: list, read, read, create, ... at its share of the rate."""
        pause = self.clients / self.rate
        # Clients start at different points of the cycle.
        cycle = (self._list, self._read, self._read, self._create)
        operations = itertools.islice(itertools.cycle(cycle), number % len(cycle), None)
        while not done.is_set() and self.tally.requests < self.max_requests:
            await next(operations)(client)
            await asyncio.sleep(pause)

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        params: dict[str, int] | None = None,
        json: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        """One request, counted; None (a failure) when no answer came."""
        self.tally.requests += 1
        try:
            return await client.request(method, url, params=params, json=json, headers=headers)
        except httpx.TransportError as error:
            self.tally.fail(f"{method} {url}: {error!r}")
            return None

    async def _list(self, client: httpx.AsyncClient) -> None:
        response = await self._send(client, "GET", "/api/loans", params={"limit": 20})
        if response is not None and response.status_code != 200:
            self.tally.fail(f"GET /api/loans: {response.status_code} {response.text[:200]}")

    async def _read(self, client: httpx.AsyncClient) -> None:
        loan_id = random.choice(self.tally.loan_ids)  # noqa: S311 - which loan to read
        response = await self._send(client, "GET", f"/api/loans/{loan_id}")
        if response is not None and response.status_code != 200:
            self.tally.fail(
                f"GET /api/loans/{loan_id}: {response.status_code} {response.text[:200]}"
            )

    async def _create(self, client: httpx.AsyncClient) -> bool:
        """A create with a fresh key, sent again with the same key until it is acknowledged."""
        key = str(uuid.uuid4())
        borrower = f"{BORROWER_PREFIX}{key[:18]}"
        body = {"borrower_id": borrower, "amount": "1500.00", "currency": "INR"}
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            await asyncio.sleep(delay)
            if attempt == 1:
                self.tally.resent_creates += 1
            response = await self._send(
                client, "POST", "/api/loans", json=body, headers={"Idempotency-Key": key}
            )
            if response is None:
                continue
            if response.status_code == 201:
                loan_id = response.json()["id"]
                self.tally.acknowledged[borrower] = loan_id
                self.tally.loan_ids.append(loan_id)
                return True
            self.tally.fail(f"POST /api/loans: {response.status_code} {response.text[:200]}")
        return False

    def _passed_on(self) -> list[str]:
        """The methods of the requests nginx tried on more than one instance (its access
        log's `upstream` lists each address it tried)."""
        lines = self.edge_log.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [entry["method"] for entry in entries if "," in entry.get("upstream", "")]

    async def _check_creates(self) -> list[str]:
        """Every acknowledged create is in the database once, as the loan it was answered as."""
        connection = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            rows = await connection.fetch(
                "SELECT borrower_id, id::text AS id FROM loans WHERE borrower_id LIKE $1",
                f"{BORROWER_PREFIX}%",
            )
        finally:
            await connection.close()
        stored: dict[str, list[str]] = {}
        for row in rows:
            stored.setdefault(row["borrower_id"], []).append(row["id"])
        problems = []
        for borrower, loan_id in self.tally.acknowledged.items():
            if stored.get(borrower) != [loan_id]:
                problems.append(
                    f"{borrower}: acknowledged {loan_id}, stored {stored.get(borrower)}"
                )
        return problems


def main(argv: list[str] | None = None) -> int:
    """Run one drill, print its line (and every failure); non-zero when anything failed."""
    parser = argparse.ArgumentParser(prog="rollout-drill", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the drill, about")
    parser.add_argument("--rate", type=float, default=200, help="requests per second, at most")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--max-requests", type=int, default=100_000, help="stop the load after this many"
    )
    args = parser.parse_args(argv)
    with RolloutDrill(
        seconds=args.seconds, rate=args.rate, clients=args.clients, max_requests=args.max_requests
    ) as rollout:
        report = rollout.run()
        failures = rollout.tally.failures
    for failure in failures[:50]:
        print(f"FAILED: {failure}", file=sys.stderr)
    for problem in report.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print(report.line())
    print(report.details())
    return 1 if report.failed or report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
