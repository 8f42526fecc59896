"""How long /api/stats's portfolio at risk takes at a million loans, both ways it could be read.

    uv run python -m bench.portfolio_at_risk --loans 1000000   # loads them first: minutes

It creates a throwaway database (dropped at the end), migrates it, loads `--loans` synthetic
loans with their payment histories (`branchloans demo-data`'s loader), then times, warm, on
one connection:

- "arrears table": the statement the service runs, over the trigger-kept `loan_arrears`
  (one row per currency and oldest unpaid due date);
- "scan of loans": the same figures computed from `loans` itself, for comparison;

and prints p50/p95 of each and their EXPLAIN ANALYZE. It prints figures only.
"""

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import make_url

from branchloans.db import Statement, init_connection
from branchloans.loans.listing import PAR_DAYS, arrears_query
from branchloans.loans.synthetic import load_synthetic_loans
from branchloans.migrate import (
    asyncpg_dsn,
    create_database_if_missing,
    drop_database,
    upgrade_to_head,
)

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
# The figures as a scan of every disbursed loan computes them: what the table saves.
SCAN = """
SELECT currency, count(*), sum(coalesce(outstanding_principal, amount)),
       coalesce(sum(coalesce(outstanding_principal, amount))
                FILTER (WHERE oldest_unpaid_due < $1), 0),
       coalesce(sum(coalesce(outstanding_principal, amount))
                FILTER (WHERE oldest_unpaid_due < $2), 0)
FROM loans WHERE status = 'disbursed' GROUP BY currency ORDER BY currency
"""


async def _timings(connection: Any, sql: str, arguments: list[Any], runs: int) -> list[float]:
    await connection.fetch(sql, *arguments)  # warm, as a running service would be
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        await connection.fetch(sql, *arguments)
        took.append((time.perf_counter() - started) * 1000)
    return took


async def _measure(dsn: str, loans: int, runs: int) -> None:
    connection = await asyncpg.connect(dsn)
    await init_connection(connection)
    try:
        started = time.perf_counter()
        report = await load_synthetic_loans(connection, loans, seed=25)
        print(f"loaded {report.loans} loans in {time.perf_counter() - started:.0f} s")
        await connection.execute("VACUUM ANALYZE loans, loan_arrears, repayments")
        counts = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM repayments), (SELECT count(*) FROM loan_arrears),"
            " (SELECT count(*) FROM loans WHERE status = 'disbursed')"
        )
        print(f"repayments {counts[0]}, loan_arrears rows {counts[1]}, disbursed {counts[2]}")
        today = datetime.now(UTC).date()
        statement = Statement.compile(arrears_query())
        cutoffs = {f"cutoff_{days}": today - timedelta(days=days) for days in PAR_DAYS}
        queries = {
            "arrears table": (statement.sql, statement.arguments(cutoffs)),
            "scan of loans": (SCAN, list(cutoffs.values())),
        }
        for name, (sql, arguments) in queries.items():
            took = await _timings(connection, sql, arguments, runs)
            p95 = statistics.quantiles(took, n=20)[-1]
            print(f"{name}: p50 {statistics.median(took):.2f} ms, p95 {p95:.2f} ms ({runs} runs)")
            plan = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *arguments
            )
            print("\n".join(f"    {row[0]}" for row in plan))
        book = await connection.fetch(statement.sql, *statement.arguments(cutoffs))
        for currency, count, outstanding, par_30, par_90 in book:
            print(
                f"{currency}: {count} loans, outstanding {outstanding:.2f},"
                f" PAR30 {par_30 / outstanding:.1%}, PAR90 {par_90 / outstanding:.1%}"
            )
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Load the loans into a throwaway database, time both queries, drop the database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    options = parser.parse_args(argv)
    url = make_url(SERVER).set(database=f"branchloans_bench_par_{uuid.uuid4().hex[:8]}")
    rendered = url.render_as_string(hide_password=False)
    asyncio.run(create_database_if_missing(rendered))
    try:
        upgrade_to_head(rendered)
        asyncio.run(_measure(asyncpg_dsn(rendered), options.loans, options.runs))
    finally:
        asyncio.run(drop_database(rendered))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
