"""What tracing costs: get by id and create, tracing off, on at a ratio of 0.1, and on at 1.0.

    uv run python -m bench.run --tracing --loans 10000 [--baseline CHECKOUT]

The services with tracing on export OTLP/HTTP to a sink in this process that answers every
export at once, so the figures are the service's own cost of making and sending spans. With
--baseline the checkout before tracing runs beside them: "off" must stay within 2% of it.
Each round measures every side in turn, a different one first, so that a busy moment of the
shared machine is spread over them.
"""

import asyncio
import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.processes import Bench, log, serve_variant
from bench.report import print_comparison_heading
from bench.scenarios import create_lines, get_lines, measure, targets

RATIOS = ("0.1", "1.0")
ROUNDS = 4


class _Sink(BaseHTTPRequestHandler):
    """Takes an OTLP export and answers 200 with an empty ExportTraceServiceResponse."""

    protocol_version = "HTTP/1.1"
    exports = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Sink.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def _sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _serve_traced(bench: Bench, ratio: str, endpoint: str) -> int:
    return serve_variant(
        bench,
        f"tracing-{ratio}",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="branchloans-bench",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG=ratio,
    )


def run_tracing(bench: Bench) -> None:
    """Measure every side, round after round, and print the figures as Markdown."""
    found = asyncio.run(targets(bench))
    with _sink() as endpoint:
        sides = {
            "tracing off" if suffix == "" else "before tracing": port
            for suffix, port in bench.services.items()
        }
        for ratio in RATIOS:
            sides[f"tracing on at {ratio}"] = _serve_traced(bench, ratio, endpoint)
        scenarios = {"get by id": get_lines(found.ids), "create": create_lines()}
        order = list(sides.items())
        for number in range(ROUNDS):
            log(f"round {number + 1} of {ROUNDS}")
            for scenario, lines in scenarios.items():
                for side, port in order:
                    measure(bench, f"round {number + 1}", f"{scenario}, {side}", port, lines)
            # Each side goes first in turn: the first of a round met a calmer (or busier) machine.
            order = order[1:] + order[:1]
        log(f"the sink took {_Sink.exports} OTLP exports")
    _report(bench, list(scenarios), list(sides))


def _report(bench: Bench, scenarios: list[str], sides: list[str]) -> None:
    print_comparison_heading(bench, "Tracing", f"{found_loans(bench)} loans", "off")
    for scenario in scenarios:
        off = None
        for side in sides:
            runs = [r for r in bench.results if r.scenario == f"{scenario}, {side}"]
            rate = statistics.mean(r.rate for r in runs)
            if side == "tracing off":
                off = rate
            ratio = f"{rate / off:.3f}" if off else "-"
            print(
                f"| {scenario} | {side} | {' / '.join(f'{r.rate:.0f}' for r in runs)}"
                f" | {rate:.0f} | {statistics.mean(r.p50_ms for r in runs):.2f}"
                f" | {statistics.mean(r.p99_ms for r in runs):.2f} | {ratio} |"
            )
    print()


def found_loans(bench: Bench) -> int:
    """How many loans the database holds now."""
    return asyncio.run(targets(bench)).loans
