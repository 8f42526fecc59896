"""How long a migration locks `loans` at a million loans, and whether it rewrites the table.

    uv run python -m bench.migration_lock --loans 1000000   # loads them first: minutes

It creates a throwaway database (dropped at the end), migrates it to the revision before
`--revision`, loads `--loans` synthetic loans (`branchloans demo-data`'s loader), then runs the
upgrade to `--revision` and the downgrade back while:

- a watcher polls `pg_locks` for an ACCESS EXCLUSIVE lock on `loans`: how long it was held;
- a reader selects one loan and a writer updates one in a loop: the longest each waited,
  which is what a client of the API would have seen;

and prints those, the time the step took, and whether `loans` got a new file (a rewrite).
"""

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import make_url

from branchloans.db import init_connection
from branchloans.loans.synthetic import load_synthetic_loans
from branchloans.migrate import (
    alembic_config,
    asyncpg_dsn,
    create_database_if_missing,
    drop_database,
)

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
HELD = (
    "SELECT count(*) FROM pg_locks WHERE relation = 'loans'::regclass"
    " AND mode = 'AccessExclusiveLock' AND granted"
)
READ = "SELECT amount FROM loans WHERE id = $1"
WRITE = "UPDATE loans SET updated_at = updated_at WHERE id = $1"


@dataclass
class Probes:
    """What the watcher and the probing clients saw while a step ran."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[float] = field(default_factory=list)
    waits: dict[str, float] = field(default_factory=dict)

    async def watch(self, dsn: str) -> None:
        """Note each moment the lock is seen held."""
        connection = await asyncpg.connect(dsn)
        try:
            while not self.stop.is_set():
                if await connection.fetchval(HELD):
                    self.held.append(time.monotonic())
                await asyncio.sleep(0.001)
        finally:
            await connection.close()

    async def client(self, dsn: str, name: str, sql: str, loan_id: uuid.UUID) -> None:
        """Run `sql` on one loan in a loop; keep the longest wait."""
        connection = await asyncpg.connect(dsn)
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                await connection.execute(sql, loan_id)
                took = time.monotonic() - started
                self.waits[name] = max(self.waits.get(name, 0.0), took)
                await asyncio.sleep(0.005)
        finally:
            await connection.close()


async def _step(url: str, step: str, revision: str) -> None:
    dsn = asyncpg_dsn(url)
    connection = await asyncpg.connect(dsn)
    try:
        loan_id = await connection.fetchval("SELECT id FROM loans LIMIT 1")
        before = await connection.fetchval("SELECT pg_relation_filenode('loans')")
        probes = Probes()
        running = [
            asyncio.create_task(probes.watch(dsn)),
            asyncio.create_task(probes.client(dsn, "read", READ, loan_id)),
            asyncio.create_task(probes.client(dsn, "write", WRITE, loan_id)),
        ]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        # Alembic's env.py runs its own event loop: in a thread of its own.
        await asyncio.to_thread(getattr(command, step), alembic_config(url), revision)
        took = time.monotonic() - started
        await asyncio.sleep(0.5)
        probes.stop.set()
        await asyncio.gather(*running)
        after = await connection.fetchval("SELECT pg_relation_filenode('loans')")
    finally:
        await connection.close()
    held = (probes.held[-1] - probes.held[0]) * 1000 if probes.held else 0.0
    print(f"{step} to {revision}: {took:.2f} s")
    print(f"  ACCESS EXCLUSIVE on loans seen for {held:.0f} ms ({len(probes.held)} polls)")
    print(
        f"  longest wait: read {probes.waits['read'] * 1000:.0f} ms,"
        f" write {probes.waits['write'] * 1000:.0f} ms"
    )
    print(f"  loans rewritten: {'yes' if before != after else 'no'}")


async def _load(url: str, loans: int) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    await init_connection(connection)
    try:
        started = time.perf_counter()
        report = await load_synthetic_loans(connection, loans, seed=17)
        await connection.execute("VACUUM ANALYZE loans")
        size = await connection.fetchval("SELECT pg_size_pretty(pg_total_relation_size('loans'))")
        print(f"loaded {report.loans} loans ({size}) in {time.perf_counter() - started:.0f} s")
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Load the loans into a throwaway database, time the step both ways, drop the database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=1_000_000)
    parser.add_argument("--revision", default="0010")
    options = parser.parse_args(argv)
    url = make_url(SERVER).set(database=f"branchloans_bench_lock_{uuid.uuid4().hex[:8]}")
    rendered = url.render_as_string(hide_password=False)
    script = ScriptDirectory.from_config(alembic_config(rendered)).get_revision(options.revision)
    assert script is not None
    assert isinstance(script.down_revision, str)
    asyncio.run(create_database_if_missing(rendered))
    try:
        command.upgrade(alembic_config(rendered), script.down_revision)
        asyncio.run(_load(rendered, options.loans))
        asyncio.run(_step(rendered, "upgrade", options.revision))
        asyncio.run(_step(rendered, "downgrade", script.down_revision))
    finally:
        asyncio.run(drop_database(rendered))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
