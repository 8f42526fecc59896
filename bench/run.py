"""The benchmark: the service as production runs it, loaded by wrk, at 5 and at 1M loans.

    uv run python bench/run.py            # about 7 minutes; needs wrk (apt-get install -y wrk)
    uv run python bench/run.py --help     # sizes, durations, connections, extra settings

It creates a throwaway database (dropped at the end), migrates it, seeds the five demo
loans, starts `branchloans serve --workers 2` and, for the get-by-id ceiling, the minimal
app in bench/ceiling.py, both on free loopback ports, and drives each scenario with wrk
for a bounded time after a short warm-up. Then it bulk-loads loans up to `--loans` with
`branchloans demo-data` and runs the scenarios again, plus creates with the totals
triggers switched off to price them, prints EXPLAIN plans of the list and stats queries,
and the resident memory of each worker. It prints figures only; nothing here is a test.
Every process it starts is stopped, whatever happens.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import make_url

from branchloans.db import DriverStatement
from branchloans.loans.cursor import Position, decode_cursor, encode_cursor
from branchloans.loans.models import LoanStatus
from branchloans.loans.service import LoanFilter, list_statement, stats_query
from branchloans.migrate import create_database_if_missing, drop_database

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WRK_SCRIPT = BENCH_DIR / "requests.lua"
# How the service runs here: production-like (INFO logs, 2 workers). Staging rather than
# production so that a check refusing default passwords in production cannot stop a
# benchmark against a local trust-auth server; add settings with --env KEY=VALUE.
# The pool is 15 connections per worker without overflow, like the ceiling's: under
# sustained load, overflow connections are opened and closed request after request.
SERVICE_ENV = {
    "APP_ENV": "staging",  # as production: API keys required, JSON logs, metrics on
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    "METRICS_ENABLED": "true",
    "DB_POOL_SIZE": "15",
    "DB_MAX_OVERFLOW": "0",
}
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
GET_ID_SAMPLE = 1000
# Creates all in one currency: the worst case for the totals rows they update.
CREATE_CURRENCY = "KES"


@dataclass
class Result:
    """One wrk run."""

    scenario: str
    stage: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    bad_status: int
    connections: int = 0
    load: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


@dataclass
class Bench:
    """What the run needs everywhere: options, the database, the processes it started."""

    args: argparse.Namespace
    workdir: Path
    dsn: str
    results: list[Result] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_key: str = ""

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in the service's `postgresql+asyncpg://` form."""
        url = make_url(self.dsn).set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child process: this one's, plus the service settings."""
        settings = dict(item.split("=", 1) for item in self.args.env)
        return {
            **os.environ,
            **SERVICE_ENV,
            **settings,
            "DATABASE_URL": self.sqlalchemy_url,
            **extra,
        }


def log(message: str) -> None:
    """Progress, on stderr, so stdout holds only the report."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def command(name: str) -> list[str]:
    """The project's console script `name`, from the virtualenv running this file."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", f"branchloans.{name}"]


def run(bench: Bench, argv: Sequence[str]) -> str:
    """Run a command to completion with the service environment; its output."""
    done = subprocess.run(
        argv, env=bench.env(), capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start(bench: Bench, name: str, argv: Sequence[str], port: int, **env: str) -> int:
    """Start a server process and wait until it answers on `port`; its pid."""
    log_file = (bench.workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        argv, env=bench.env(**env), stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT
    )
    bench.processes.append(process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {(bench.workdir / f'{name}.log').read_text()}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process.pid
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not listen on {port} within 60 s")


def stop(bench: Bench, pid: int) -> None:
    """Stop a process this run started (uvicorn stops its workers on SIGTERM)."""
    for process in bench.processes:
        if process.pid == pid and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_rss_mb(pid: int) -> list[float]:
    """Resident memory of each uvicorn worker (the spawned children of `pid`), in MB."""
    sizes = []
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" not in cmdline:
            continue  # multiprocessing's resource tracker, not a worker
        status = Path(f"/proc/{child}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            sizes.append(int(match[1]) / 1024)
    return sizes


def wrk(
    bench: Bench, port: int, lines: list[str], seconds: float, connections: int
) -> dict[str, Any]:
    """Drive 127.0.0.1:`port` with the request `lines` for `seconds`; wrk's figures."""
    requests = bench.workdir / f"requests-{uuid.uuid4().hex[:8]}.txt"
    requests.write_text("\n".join(lines) + "\n")
    argv = [
        "wrk",
        f"-t{min(bench.args.threads, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}",
        "--",
        str(requests),
        bench.api_key,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"^BENCH_RESULT (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed:\n{done.stdout}{done.stderr}")
    figures: dict[str, Any] = json.loads(match[1])
    return figures


def measure(
    bench: Bench,
    stage: str,
    scenario: str,
    port: int,
    lines: list[str],
    connections: int | None = None,
) -> Result:
    """Warm up, then one measured wrk run; recorded and returned."""
    connections = connections or bench.args.connections
    wrk(bench, port, lines, bench.args.warmup, connections)
    load = os.getloadavg()[0]
    figures = wrk(bench, port, lines, bench.args.duration, connections)
    result = Result(scenario, stage, **figures, connections=connections, load=load)
    bench.results.append(result)
    log(
        f"{stage:>10} | {scenario:<34} c={connections:<3} {result.rate:>8.0f} req/s"
        f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms"
        + (f"  errors {result.errors}" if result.errors else "")
        + (f"  status >= 400: {result.bad_status}" if result.bad_status else "")
    )
    return result


def get_lines(ids: Sequence[str]) -> list[str]:
    """GET requests for each loan id."""
    return [f"GET\t/api/loans/{loan_id}" for loan_id in ids]


def create_lines(count: int = 200) -> list[str]:
    """Varied applications, all valid."""
    rng = random.Random(8)
    return [
        "POST\t/api/loans\t"
        + json.dumps(
            {
                "borrower_id": f"usr_bench_{rng.randrange(100_000):06d}",
                "amount": f"{rng.randrange(100, 50_000)}.{rng.randrange(100):02d}",
                "currency": CREATE_CURRENCY,
                "term_months": rng.choice([6, 12, 24]),
                "interest_rate_apr": "18.50",
            }
        )
        for _ in range(count)
    ]


@dataclass(frozen=True)
class Targets:
    """What the scenarios of a stage ask for, read from the database at that stage."""

    loans: int
    ids: list[str]
    deep_cursor: str
    deep_status_cursor: str


async def targets(bench: Bench) -> Targets:
    """Ids to fetch and cursors 90% of the way down the list (all loans, and repaid ones)."""
    connection = await asyncpg.connect(bench.dsn)
    try:
        loans = await connection.fetchval("SELECT count(*) FROM loans")
        ids = await connection.fetch(
            "SELECT id::text FROM loans ORDER BY random() LIMIT $1", GET_ID_SAMPLE
        )
        cursors = []
        for condition in ("TRUE", "status = 'repaid'"):
            matching = await connection.fetchval(f"SELECT count(*) FROM loans WHERE {condition}")
            row = await connection.fetchrow(
                f"SELECT created_at, id FROM loans WHERE {condition}"
                " ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
                max(0, min(matching - 2, matching * 9 // 10)),
            )
            cursors.append(encode_cursor(Position(row["created_at"], row["id"])) if row else "")
    finally:
        await connection.close()
    return Targets(loans, [row[0] for row in ids], *cursors)


TOTALS_MATCH_SCAN = """
SELECT NOT EXISTS (
    (SELECT status, currency, count(*), sum(amount) FROM loans GROUP BY 1, 2)
    EXCEPT
    (SELECT status, currency, sum(loans), sum(amount) FROM loan_totals GROUP BY 1, 2
     HAVING sum(loans) <> 0)
)
"""


async def totals_match_scan(bench: Bench) -> bool:
    """Whether the trigger-kept totals equal the aggregates of a full scan of the loans."""
    connection = await asyncpg.connect(bench.dsn)
    try:
        matches: bool = await connection.fetchval(TOTALS_MATCH_SCAN)
        return matches
    finally:
        await connection.close()


async def execute(bench: Bench, *statements: str) -> None:
    """Run SQL statements in one transaction on the bench database."""
    connection = await asyncpg.connect(bench.dsn)
    try:
        async with connection.transaction():
            for statement in statements:
                await connection.execute(statement)
    finally:
        await connection.close()


def start_ceiling(bench: Bench) -> tuple[int, int]:
    """The reference app on a free port; its pid and port."""
    port = free_port()
    argv = [
        *command("uvicorn"),
        "bench.ceiling:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(bench.args.workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return start(bench, "ceiling", argv, port, BENCH_DSN=bench.dsn), port


def run_stage(bench: Bench, stage: str, service_port: int, *, price_totals: bool) -> None:
    """Every scenario against the database as it is now."""
    found = asyncio.run(targets(bench))
    log(f"stage {stage}: {found.loans} loans")
    measure(bench, stage, "health", service_port, ["GET\t/health"])
    ceiling, ceiling_port = start_ceiling(bench)
    try:
        # Alternated, so that a busy moment of the shared machine does not favour one side.
        for _ in range(2):
            measure(bench, stage, "get by id", service_port, get_lines(found.ids))
            measure(bench, stage, "get by id, ceiling app", ceiling_port, get_lines(found.ids))
    finally:
        stop(bench, ceiling)
    measure(bench, stage, "stats", service_port, ["GET\t/api/stats"])
    measure(bench, stage, "list, first page", service_port, ["GET\t/api/loans"])
    measure(
        bench,
        stage,
        "list, deep page",
        service_port,
        [f"GET\t/api/loans?cursor={found.deep_cursor}"],
    )
    measure(
        bench,
        stage,
        "list, status=repaid, deep page",
        service_port,
        [f"GET\t/api/loans?status=repaid&cursor={found.deep_status_cursor}"],
    )
    # Service time rather than queueing: the same reads with few connections.
    few = bench.args.latency_connections
    for scenario, path in (
        ("stats", "/api/stats"),
        ("list, first page", "/api/loans"),
        ("list, deep page", f"/api/loans?cursor={found.deep_cursor}"),
    ):
        measure(bench, stage, scenario, service_port, [f"GET\t{path}"], connections=few)
    measure(bench, stage, "create", service_port, create_lines())
    if price_totals:
        # Alternate so that a busy moment of the machine does not land on one side only.
        for _ in range(2):
            asyncio.run(
                execute(bench, "ALTER TABLE loans DISABLE TRIGGER loan_totals_after_insert")
            )
            measure(bench, stage, "create, totals triggers off", service_port, create_lines())
            asyncio.run(execute(bench, "ALTER TABLE loans ENABLE TRIGGER loan_totals_after_insert"))
            measure(bench, stage, "create", service_port, create_lines())
        # The loans created without the trigger are missing from the totals: recount them.
        asyncio.run(
            execute(
                bench,
                "LOCK TABLE loans IN SHARE ROW EXCLUSIVE MODE",
                "DELETE FROM loan_totals",
                "INSERT INTO loan_totals (status, currency, slot, loans, amount)"
                " SELECT status, currency, 0, count(*), sum(amount) FROM loans GROUP BY 1, 2",
            )
        )


def explain_queries(
    found: Targets, borrower: str, window: tuple[datetime, datetime]
) -> dict[str, tuple[str, list[Any]]]:
    """The SQL and arguments the service sends for each kind of page, by name."""
    deep = decode_cursor(found.deep_cursor)
    deep_repaid = decode_cursor(found.deep_status_cursor)
    pages = {
        "first page": (LoanFilter(), None),
        "deep page (90% down)": (LoanFilter(), deep),
        "status=repaid, deep page": (LoanFilter(status=LoanStatus.REPAID), deep_repaid),
        "currency=USD, first page": (LoanFilter(currency="USD"), None),
        "currency=USD, deep page": (LoanFilter(currency="USD"), deep),
        "status=defaulted & currency=GHS": (
            LoanFilter(status=LoanStatus.DEFAULTED, currency="GHS"),
            None,
        ),
        "borrower_id": (LoanFilter(borrower_id=borrower), None),
        "created window (one day)": (
            LoanFilter(created_after=window[0], created_before=window[1]),
            None,
        ),
    }
    queries = {
        name: list_statement(where, limit=101, after=after)
        for name, (where, after) in pages.items()
    }
    queries["stats"] = (DriverStatement.compile(stats_query()), {})
    return {
        name: (statement.sql, statement.arguments(values))
        for name, (statement, values) in queries.items()
    }


def _literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain(bench: Bench) -> dict[str, str]:
    """EXPLAIN ANALYZE of each kind of list page and of the stats query."""
    found = await targets(bench)
    connection = await asyncpg.connect(bench.dsn)
    try:
        borrower = await connection.fetchval(
            "SELECT borrower_id FROM loans WHERE currency = 'INR' ORDER BY created_at LIMIT 1"
        )
        middle = await connection.fetchval(
            "SELECT created_at FROM loans ORDER BY created_at"
            " OFFSET (SELECT count(*) / 2 FROM loans) LIMIT 1"
        )
        window = (middle, middle + timedelta(days=1))
        # The plan the service ends up with: asyncpg prepares each statement once per
        # connection, and Postgres soon plans a prepared statement once for any values.
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        plans = {}
        for name, (sql, arguments) in explain_queries(found, borrower, window).items():
            await connection.execute(f"PREPARE page AS {sql}")
            # EXECUTE takes no parameters of its own: the arguments go in as literals.
            values = ", ".join(_literal(argument) for argument in arguments)
            execute = f"EXECUTE page({values})" if arguments else "EXECUTE page"
            await connection.fetch(execute)  # warm, as a running service would be
            rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {execute}")
            await connection.execute("DEALLOCATE page")
            plans[name] = "\n".join(row[0] for row in rows)
    finally:
        await connection.close()
    return plans


def machine() -> str:
    """CPU, memory, OS and Postgres, for the report."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return (
        f"{os.cpu_count()} CPU ({cpu}), {int(memory) // 1024 // 1024 + 1} GiB,"
        f" {platform.platform()}, Python {platform.python_version()}"
    )


def report(
    bench: Bench, rss: list[float], load_seconds: float, plans: dict[str, str], consistent: bool
) -> None:
    """The figures, as Markdown on stdout."""
    args = bench.args
    print(f"## Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"Machine: {machine()}; load average before the run {args.load_before}.")
    settings = {**SERVICE_ENV, **dict(item.split("=", 1) for item in args.env)}
    print(
        f"wrk: {args.threads} threads, {args.connections} connections, {args.duration} s per"
        f" scenario after {args.warmup} s of warm-up, on 127.0.0.1. Service: `branchloans serve"
        f" --workers {args.workers}` with {', '.join(f'{k}={v}' for k, v in settings.items())}.\n"
    )
    print("| stage | scenario | connections | req/s | p50 ms | p99 ms | errors | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in bench.results:
        print(
            f"| {result.stage} | {result.scenario} | {result.connections} | {result.rate:.0f}"
            f" | {result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.errors + result.bad_status}"
            f" | {result.load:.1f} |"
        )
    print("\n(load: the machine's 1-minute load average when the measured run began)\n")
    print()
    for stage in dict.fromkeys(result.stage for result in bench.results):
        by_name: dict[str, list[Result]] = {}
        for result in bench.results:
            if result.stage == stage:
                by_name.setdefault(result.scenario, []).append(result)
        ours = statistics.mean(result.rate for result in by_name["get by id"])
        ceiling = statistics.mean(result.rate for result in by_name["get by id, ceiling app"])
        print(
            f"- {stage}: get by id at **{ours / ceiling:.2f}** of the ceiling"
            f" ({ours:.0f} / {ceiling:.0f} req/s)"
        )
        if "create, totals triggers off" in by_name:
            on = statistics.mean(result.rate for result in by_name["create"])
            off = statistics.mean(result.rate for result in by_name["create, totals triggers off"])
            print(
                f"- {stage}: creates {on:.0f}/s with the totals triggers, {off:.0f}/s without:"
                f" the stats mechanism costs **{(1 - on / off) * 100:.1f}%** of create throughput"
            )
    print(f"- bulk load of the large stage (`branchloans demo-data`): {load_seconds:.1f} s")
    print(
        "- totals equal a full scan of the loans after the small stage's creates and the bulk"
        f" load: {'yes' if consistent else 'NO'}"
    )
    print(f"- RSS per worker after the run: {', '.join(f'{size:.0f} MB' for size in rss)}")
    print(
        "\n### EXPLAIN (ANALYZE, BUFFERS) at the large stage\n\n"
        "Generic plans, the ones the service's prepared statements settle on.\n"
    )
    for name, plan in plans.items():
        print(f"{name}:\n\n```\n{plan}\n```\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark; 0 when every request succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_SERVER_URL", DEFAULT_SERVER_URL),
        help="a Postgres the throwaway database is created on",
    )
    parser.add_argument("--loans", type=int, default=1_000_000, help="loans in the large stage")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per scenario")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--latency-connections",
        type=int,
        default=4,
        help="connections of the latency pass over stats and list pages",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of each app")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more setting for the service (repeatable)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    args.load_before = " ".join(f"{load:.2f}" for load in os.getloadavg())
    name = f"branchloans_bench_{uuid.uuid4().hex[:10]}"
    server = make_url(args.server_url).set(drivername="postgresql")
    dsn = server.set(database=name).render_as_string(hide_password=False)

    workdir = Path(tempfile.mkdtemp(prefix="branchloans-bench-"))
    bench = Bench(args, workdir, dsn)
    asyncio.run(create_database_if_missing(dsn))
    status = 1
    try:
        status = _run(bench)
        return status
    finally:
        for process in bench.processes:
            stop(bench, process.pid)
        asyncio.run(drop_database(dsn))
        log(f"dropped database {name}")
        if status == 0:
            shutil.rmtree(workdir)
        else:
            log(f"kept the logs of the service and the ceiling app in {workdir}")


def _run(bench: Bench) -> int:
    log(f"database {make_url(bench.dsn).database}: migrating and seeding")
    run(bench, [*command("branchloans"), "migrate"])
    run(bench, [*command("branchloans"), "seed"])
    bench.api_key = run(
        bench,
        [
            *command("branchloans"),
            "api-keys",
            "create",
            "--name",
            "bench",
            "--scopes",
            "loans:read,loans:write,loans:manage",
        ],
    ).strip()
    port = free_port()
    service = start(
        bench,
        "service",
        [
            *command("branchloans"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(bench.args.workers),
        ],
        port,
    )
    run_stage(bench, "5 loans", port, price_totals=False)

    existing = asyncio.run(targets(bench)).loans
    log(f"loading {bench.args.loans - existing} synthetic loans")
    started = time.perf_counter()
    run(
        bench,
        [
            *command("branchloans"),
            "demo-data",
            "--count",
            str(bench.args.loans - existing),
            "--seed",
            "1",
        ],
    )
    load_seconds = time.perf_counter() - started
    asyncio.run(_vacuum(bench.dsn))
    consistent = asyncio.run(totals_match_scan(bench))
    log(f"totals equal a full scan after the creates and the bulk load: {consistent}")
    label = (
        f"{bench.args.loans:,} loans".replace(",", " ")
        if bench.args.loans < 1_000_000
        else f"{bench.args.loans // 1_000_000}M loans"
    )
    run_stage(bench, label, port, price_totals=True)
    rss = worker_rss_mb(service)
    plans = asyncio.run(explain(bench))
    report(bench, rss, load_seconds, plans, consistent)
    failed = sum(result.errors + result.bad_status for result in bench.results)
    return 1 if failed else 0


async def _vacuum(dsn: str) -> None:
    # What autovacuum would soon do after a bulk load: hint bits and visibility map set.
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM (ANALYZE) loans, loan_events, loan_totals")
    finally:
        await connection.close()


if __name__ == "__main__":
    sys.exit(main())
