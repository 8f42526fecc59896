"""The benchmark: the service as production runs it, loaded by wrk, at 5 and at 1M loans.

    uv run python -m bench.run            # about 7 minutes; needs wrk (apt-get install -y wrk)
    uv run python -m bench.run --help     # sizes, durations, connections, extra settings

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
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from bench.limits import run_limits
from bench.pooler import run_pooler
from bench.processes import (
    BASELINE,
    ROOT,
    Bench,
    command,
    free_port,
    log,
    run,
    start,
    stop,
    worker_rss_mb,
)
from bench.report import report
from bench.scenarios import explain, run_stage, targets, totals_match_scan
from bench.tracing import run_tracing
from sqlalchemy import make_url

from branchloans.migrate import create_database_if_missing, drop_database

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


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
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also run the service of another checkout (bootstrapped: its .venv exists) on the"
        " same database, each scenario alternating between the two",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="only price tracing (bench/tracing.py): get by id and create, tracing off, on at"
        " 0.1 and at 1.0, at --loans loans",
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="only price PgBouncer (bench/pooler.py): get by id, a list page and create,"
        " straight to Postgres and through PgBouncer, at --loans loans",
    )
    parser.add_argument(
        "--limits",
        action="store_true",
        help="only price the per-key limits (bench/limits.py): get by id with the limiter on"
        " and off, at --loans loans",
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
    workers = {"": _serve(bench, "service", command("branchloans"), ROOT)}
    if bench.args.baseline is not None:
        baseline = bench.args.baseline.resolve()
        script = [str(baseline / ".venv" / "bin" / "branchloans")]
        workers[BASELINE] = _serve(bench, "baseline", script, baseline)
    only = (
        run_tracing
        if bench.args.tracing
        else run_pooler
        if bench.args.pgbouncer
        else run_limits
        if bench.args.limits
        else None
    )
    if only is not None:
        _load(bench)
        only(bench)
        return 1 if any(r.errors + r.bad_status for r in bench.results) else 0
    bench.development_port = free_port()
    development = [*command("branchloans"), "serve", "--host", "127.0.0.1"]
    start(
        bench,
        "development",
        [*development, "--port", str(bench.development_port), "--workers", str(bench.args.workers)],
        bench.development_port,
        APP_ENV="development",
        LOG_FORMAT="console",
    )
    run_stage(bench, "5 loans", price_totals=False)

    load_seconds = _load(bench)
    consistent = asyncio.run(totals_match_scan(bench))
    log(f"totals equal a full scan after the creates and the bulk load: {consistent}")
    label = (
        f"{bench.args.loans:,} loans".replace(",", " ")
        if bench.args.loans < 1_000_000
        else f"{bench.args.loans // 1_000_000}M loans"
    )
    run_stage(bench, label, price_totals=True)
    rss = {suffix: worker_rss_mb(pid) for suffix, pid in workers.items()}
    plans = asyncio.run(explain(bench))
    report(bench, rss, load_seconds, plans, consistent)
    failed = sum(result.errors + result.bad_status for result in bench.results)
    return 1 if failed else 0


def _load(bench: Bench) -> float:
    """Bulk-load loans up to --loans, vacuumed as autovacuum soon would; the seconds taken."""
    missing = bench.args.loans - asyncio.run(targets(bench)).loans
    started = time.perf_counter()
    # The small stage's creates may already hold --loans loans: nothing to add then.
    if missing > 0:
        log(f"loading {missing} synthetic loans")
        run(bench, [*command("branchloans"), "demo-data", "--count", str(missing), "--seed", "1"])
    load_seconds = time.perf_counter() - started
    asyncio.run(_vacuum(bench.dsn))
    return load_seconds


def _serve(bench: Bench, name: str, script: list[str], checkout: Path) -> int:
    """Start `branchloans serve` of `checkout` on a free port, as a side of the comparison."""
    port = free_port()
    argv = [*script, "serve", "--host", "127.0.0.1", "--port", str(port)]
    pid = start(bench, name, [*argv, "--workers", str(bench.args.workers)], port, cwd=checkout)
    bench.services[BASELINE if name == "baseline" else ""] = port
    return pid


async def _vacuum(dsn: str) -> None:
    # What autovacuum would soon do after a bulk load: hint bits and visibility map set.
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM (ANALYZE) loans, loan_events, loan_totals")
    finally:
        await connection.close()


if __name__ == "__main__":
    sys.exit(main())
