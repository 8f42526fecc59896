"""What the per-key limits cost: get by id with the limiter on and off, in one run.

    uv run python -m bench.run --limits --loans 10000

"On" is the service as the benchmark always runs it: every request counted against its
key's rate and held as one of its requests in flight, with limits set too high for one key's
load to reach (it would measure refusals, not cost). "Off" sets both limits to 0. Each round
measures both, a different one first.
"""

import asyncio
import statistics

from bench.processes import Bench, log, serve_variant
from bench.report import print_comparison_heading
from bench.scenarios import get_lines, measure, targets
from bench.tracing import found_loans

ROUNDS = 4


def run_limits(bench: Bench) -> None:
    """Measure both sides, round after round, and print the figures as Markdown."""
    lines = get_lines(asyncio.run(targets(bench)).ids)
    order = [
        ("limiter on", bench.services[""]),
        (
            "limiter off",
            serve_variant(bench, "limiter-off", KEY_RATE_LIMIT="0", KEY_CONCURRENCY_LIMIT="0"),
        ),
    ]
    for number in range(ROUNDS):
        log(f"round {number + 1} of {ROUNDS}")
        for side, port in order:
            measure(bench, f"round {number + 1}", f"get by id, {side}", port, lines)
        order = order[1:] + order[:1]
    _report(bench)


def _report(bench: Bench) -> None:
    print_comparison_heading(bench, "Per-key limits", f"{found_loans(bench)} loans", "off")
    off = statistics.mean(r.rate for r in bench.results if r.scenario.endswith("limiter off"))
    for side in ("limiter off", "limiter on"):
        runs = [r for r in bench.results if r.scenario == f"get by id, {side}"]
        rate = statistics.mean(r.rate for r in runs)
        print(
            f"| get by id | {side} | {' / '.join(f'{r.rate:.0f}' for r in runs)}"
            f" | {rate:.0f} | {statistics.mean(r.p50_ms for r in runs):.2f}"
            f" | {statistics.mean(r.p99_ms for r in runs):.2f} | {rate / off:.3f} |"
        )
    print()
