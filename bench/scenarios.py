"""The benchmark's scenarios: what each stage measures, and the EXPLAIN of the service's queries."""

import asyncio
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from bench.processes import Bench, Result, command, free_port, log, start, stop, wrk

from branchloans.config import DEVELOPMENT_CURSOR_KEY
from branchloans.db import Statement
from branchloans.loans.cursor import CursorCodec, Position
from branchloans.loans.listing import (
    PAR_DAYS,
    LoanFilter,
    arrears_query,
    list_statement,
    stats_query,
)
from branchloans.loans.models import LoanStatus

GET_ID_SAMPLE = 1000
DEVELOPMENT_GET_BY_ID = "get by id, development console logs"
# Creates all in one currency: the worst case for the totals rows they update.
CREATE_CURRENCY = "KES"


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
    deep: Position | None
    deep_repaid: Position | None


def cursor(bench: Bench, position: Position | None, where: LoanFilter) -> str:
    """The cursor the service under test would give for `position`: signed with its
    CURSOR_SIGNING_KEYS (the development key unless --env sets them)."""
    if position is None:
        return ""
    keys = bench.env().get("CURSOR_SIGNING_KEYS") or DEVELOPMENT_CURSOR_KEY
    codec = CursorCodec([key.strip().encode() for key in keys.split(",") if key.strip()])
    return codec.encode(position, where.canonical())


async def targets(bench: Bench) -> Targets:
    """Ids to fetch and cursors 90% of the way down the list (all loans, and repaid ones)."""
    connection = await asyncpg.connect(bench.dsn)
    try:
        loans = await connection.fetchval("SELECT count(*) FROM loans")
        ids = await connection.fetch(
            "SELECT id::text FROM loans ORDER BY random() LIMIT $1", GET_ID_SAMPLE
        )
        cursors: list[Position | None] = []
        for condition in ("TRUE", "status = 'repaid'"):
            matching = await connection.fetchval(f"SELECT count(*) FROM loans WHERE {condition}")
            row = await connection.fetchrow(
                f"SELECT created_at, id FROM loans WHERE {condition}"
                " ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
                max(0, min(matching - 2, matching * 9 // 10)),
            )
            cursors.append(Position(row["created_at"], row["id"]) if row else None)
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


def _each_service(bench: Bench) -> list[tuple[str, int]]:
    # (scenario suffix, port): the service under test, then any baseline beside it.
    return list(bench.services.items())


def run_stage(bench: Bench, stage: str, *, price_totals: bool) -> None:
    """Every scenario against the database as it is now, on each service, alternated so that
    a busy moment of the shared machine does not favour one side."""
    found = asyncio.run(targets(bench))
    log(f"stage {stage}: {found.loans} loans")
    services = _each_service(bench)
    main_port = services[0][1]
    for _ in range(2):
        for suffix, port in services:
            measure(bench, stage, f"health{suffix}", port, ["GET\t/health"])
        measure(bench, stage, "liveness", main_port, ["GET\t/liveness"])
    ceiling, ceiling_port = start_ceiling(bench)
    try:
        for _ in range(2):
            for suffix, port in services:
                measure(bench, stage, f"get by id{suffix}", port, get_lines(found.ids))
            measure(bench, stage, "get by id, ceiling app", ceiling_port, get_lines(found.ids))
            if bench.development_port is not None:
                measure(
                    bench,
                    stage,
                    DEVELOPMENT_GET_BY_ID,
                    bench.development_port,
                    get_lines(found.ids),
                )
    finally:
        stop(bench, ceiling)
    reads = {
        "stats": "/api/stats",
        "list, first page": "/api/loans",
        "list, deep page": f"/api/loans?cursor={cursor(bench, found.deep, LoanFilter())}",
        "list, status=repaid, deep page": (
            "/api/loans?status=repaid&cursor="
            + cursor(bench, found.deep_repaid, LoanFilter(status=LoanStatus.REPAID))
        ),
    }
    for scenario, path in reads.items():
        for suffix, port in services:
            measure(bench, stage, f"{scenario}{suffix}", port, [f"GET\t{path}"])
    # Service time rather than queueing: the same reads with few connections.
    few = bench.args.latency_connections
    for scenario in ("stats", "list, first page", "list, deep page"):
        for suffix, port in services:
            measure(
                bench,
                stage,
                f"{scenario}{suffix}",
                port,
                [f"GET\t{reads[scenario]}"],
                connections=few,
            )
    for suffix, port in services:
        measure(bench, stage, f"create{suffix}", port, create_lines())
    if price_totals:
        # Alternate so that a busy moment of the machine does not land on one side only.
        for _ in range(2):
            asyncio.run(
                execute(bench, "ALTER TABLE loans DISABLE TRIGGER loan_totals_after_insert")
            )
            measure(bench, stage, "create, totals triggers off", main_port, create_lines())
            asyncio.run(execute(bench, "ALTER TABLE loans ENABLE TRIGGER loan_totals_after_insert"))
            measure(bench, stage, "create", main_port, create_lines())
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
    deep, deep_repaid = found.deep, found.deep_repaid
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
    queries["stats"] = (Statement.compile(stats_query()), {})
    today = datetime.now(UTC).date()
    queries["stats, portfolio at risk"] = (
        Statement.compile(arrears_query()),
        {f"cutoff_{days}": today - timedelta(days=days) for days in PAR_DAYS},
    )
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
