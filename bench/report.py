"""The benchmark's report: its figures as Markdown on stdout."""

import contextlib
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

from bench.processes import BASELINE, SERVICE_ENV, Bench, Result, log_problems
from bench.scenarios import DEVELOPMENT_GET_BY_ID


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


def print_comparison_heading(bench: Bench, title: str, details: str, versus: str) -> None:
    """The heading and table head of a run that prices one thing against its absence."""
    args = bench.args
    print(f"## {title}, run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"Machine: {machine()}; load average before the run {args.load_before}.")
    print(
        f"wrk: {args.threads} threads, {args.connections} connections, {args.duration} s per"
        f" scenario after {args.warmup} s of warm-up; `--workers {args.workers}`; {details}.\n"
    )
    print(f"| scenario | side | req/s per round | mean req/s | p50 ms | p99 ms | vs {versus} |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")


def report(
    bench: Bench,
    rss: dict[str, list[float]],
    load_seconds: float,
    plans: dict[str, str],
    consistent: bool,
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
        ceiling = statistics.mean(result.rate for result in by_name["get by id, ceiling app"])
        for suffix in bench.services:
            ours = statistics.mean(result.rate for result in by_name[f"get by id{suffix}"])
            print(
                f"- {stage}: get by id{suffix} at **{ours / ceiling:.2f}** of the ceiling"
                f" ({ours:.0f} / {ceiling:.0f} req/s)"
            )
        main = statistics.mean(result.rate for result in by_name["get by id"])
        if DEVELOPMENT_GET_BY_ID in by_name:
            console = statistics.mean(result.rate for result in by_name[DEVELOPMENT_GET_BY_ID])
            print(
                f"- {stage}: get by id with development's console logs at"
                f" **{console / main:.2f}** of JSON logs ({console:.0f} / {main:.0f} req/s)"
            )
        health = statistics.mean(result.rate for result in by_name["health"])
        liveness = statistics.mean(result.rate for result in by_name["liveness"])
        print(
            f"- {stage}: /health at **{health / liveness:.2f}** of /liveness"
            f" ({health:.0f} / {liveness:.0f} req/s)"
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
    for suffix, sizes in rss.items():
        print(
            f"- RSS per worker after the run{suffix}: "
            + ", ".join(f"{size:.0f} MB" for size in sizes)
        )
    for suffix, name in (("", "service"), (BASELINE, "baseline")):
        if suffix in bench.services:
            errors, tracebacks = log_problems(bench, name)
            print(f"- log of the service{suffix}: {errors} ERROR lines, {tracebacks} tracebacks")
    if BASELINE in bench.services:
        _compare(bench)
    print(
        "\n### EXPLAIN (ANALYZE, BUFFERS) at the large stage\n\n"
        "Generic plans, the ones the service's prepared statements settle on.\n"
    )
    for name, plan in plans.items():
        print(f"{name}:\n\n```\n{plan}\n```\n")


def _compare(bench: Bench) -> None:
    """Each scenario's throughput against the baseline's, measured in the same run."""
    print("\n### Against the baseline, same run\n")
    print("| stage | scenario | connections | req/s | before | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    rates: dict[tuple[str, str, int], list[float]] = {}
    for result in bench.results:
        rates.setdefault((result.stage, result.scenario, result.connections), []).append(
            result.rate
        )
    for (stage, scenario, connections), ours in rates.items():
        before = rates.get((stage, scenario + BASELINE, connections))
        if scenario.endswith(BASELINE) or before is None:
            continue
        now, then = statistics.mean(ours), statistics.mean(before)
        print(
            f"| {stage} | {scenario} | {connections} | {now:.0f} | {then:.0f} | {now / then:.2f} |"
        )
