"""What PgBouncer costs: the same service straight to Postgres and through PgBouncer.

    uv run python -m bench.run --pgbouncer --loans 10000

PgBouncer (transaction pooling, tools/pgbouncer.py) listens on a free loopback port with
fewer server connections than the service's pools hold, as in production; the service
behind it runs with DB_TRANSACTION_POOLER=true. Each round measures both sides in turn, a
different one first.
"""

import asyncio
import statistics

from bench.processes import Bench, log, serve_variant
from bench.report import print_comparison_heading
from bench.scenarios import create_lines, get_lines, measure, targets
from sqlalchemy import make_url

from tools.pgbouncer import pgbouncer_in_front_of

ROUNDS = 3
DIRECT = "straight to Postgres"
POOLED = "through PgBouncer"
SERVER_CONNECTIONS = 10


def run_pooler(bench: Bench) -> None:
    """Measure both sides, round after round, and print the figures as Markdown."""
    found = asyncio.run(targets(bench))
    with pgbouncer_in_front_of(bench.sqlalchemy_url, server_connections=SERVER_CONNECTIONS) as url:
        port = serve_variant(bench, "pgbouncer", DATABASE_URL=url, DB_TRANSACTION_POOLER="true")
        log(f"PgBouncer on port {make_url(url).port}, {SERVER_CONNECTIONS} server connections")
        order = [(DIRECT, bench.services[""]), (POOLED, port)]
        scenarios = {
            "get by id": get_lines(found.ids),
            "list, first page": ["GET\t/api/loans"],
            "create": create_lines(),
        }
        for number in range(ROUNDS):
            log(f"round {number + 1} of {ROUNDS}")
            for scenario, lines in scenarios.items():
                for side, side_port in order:
                    measure(bench, f"round {number + 1}", f"{scenario}, {side}", side_port, lines)
            order = order[1:] + order[:1]
    _report(bench, list(scenarios), found.loans)


def _report(bench: Bench, scenarios: list[str], loans: int) -> None:
    print_comparison_heading(
        bench,
        "Through PgBouncer",
        f"{loans} loans; PgBouncer {SERVER_CONNECTIONS} server connections, transaction pooling",
        "direct",
    )
    for scenario in scenarios:
        direct = None
        for side in (DIRECT, POOLED):
            runs = [r for r in bench.results if r.scenario == f"{scenario}, {side}"]
            rate = statistics.mean(r.rate for r in runs)
            direct = direct or rate
            print(
                f"| {scenario} | {side} | {' / '.join(f'{r.rate:.0f}' for r in runs)}"
                f" | {rate:.0f} | {statistics.mean(r.p50_ms for r in runs):.2f}"
                f" | {statistics.mean(r.p99_ms for r in runs):.2f} | {rate / direct:.3f} |"
            )
    print()
