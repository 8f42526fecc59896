"""The per-key limits' syncs through Postgres, once per KEY_LIMITS_SYNC_SECONDS per worker.

A sync is one transaction on the primary, under a transaction-level advisory lock, so the
workers sync one at a time and each claims only what the others have not. A sync holds it
about 6 ms (bench/RESULTS.md), so a hundred workers syncing once a second leave it free
about half the time. The worker
says it is alive, adds what it admitted to its own rows, reads everyone's admissions and the
other live workers' claims, and replaces its claims. While Postgres cannot be reached, each
worker goes on within what it last claimed, then, after a few failed syncs, within its part of
what it sees left; it reports its admissions when a sync succeeds again.
"""

import asyncio
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import text

from branchloans.auth.metrics import KeyLimitMetrics
from branchloans.auth.quotas import Claim, KeyQuotas, Plan, Report, SharedCounts
from branchloans.db import Database, Queries, Statement

logger = structlog.get_logger(__name__)

# A worker that has not synced for 3 intervals, and at least 5 s (a busy event loop may hold a
# short interval's sync back), is taken for gone: its claims no longer count. After 3 failed
# syncs a worker limits alone; a worker gone for twice that long loses its row.
_FAILED_SYNCS_ALONE = 3
_ALIVE_AT_LEAST = 5.0


def _alive_seconds(quotas: KeyQuotas) -> float:
    return max(quotas.sync_seconds * _FAILED_SYNCS_ALONE, _ALIVE_AT_LEAST)


_SYNC_LOCK = 0x6B65795F6C696D69  # the advisory lock's number: "key_limi" in ASCII


def _statement(sql: str) -> Statement:
    return Statement.compile(text(sql))


_ONE_AT_A_TIME = _statement("SELECT pg_advisory_xact_lock(:lock)")
_ALIVE = _statement(
    "INSERT INTO key_limit_workers (worker, seen_at, first_allowance)"
    " VALUES (:worker, now(), :first_allowance)"
    " ON CONFLICT (worker) DO UPDATE"
    " SET seen_at = excluded.seen_at, first_allowance = excluded.first_allowance"
)
_ADD_HITS = _statement(
    "INSERT INTO key_limit_hits (key_name, window_start, worker, hits)"
    " SELECT key_name, window_start, :worker, hits"
    " FROM unnest(CAST(:names AS text[]), CAST(:windows AS timestamptz[]),"
    " CAST(:hits AS bigint[])) AS reported (key_name, window_start, hits)"
    " ON CONFLICT (key_name, window_start, worker)"
    " DO UPDATE SET hits = key_limit_hits.hits + excluded.hits"
)
_FORGET_WINDOWS = _statement("DELETE FROM key_limit_hits WHERE window_start < :since")
_HITS = _statement(
    "SELECT key_name, window_start, sum(hits)::bigint AS hits FROM key_limit_hits"
    " WHERE window_start >= :since GROUP BY key_name, window_start"
)
_OTHER_WORKERS = _statement(
    "SELECT worker, first_allowance FROM key_limit_workers"
    " WHERE worker <> :worker AND seen_at > now() - make_interval(secs => :alive_seconds)"
)
_OTHER_CLAIMS = _statement(
    "SELECT worker, key_name, allowance, in_flight"
    " FROM key_limit_claims JOIN key_limit_workers USING (worker)"
    " WHERE worker <> :worker AND seen_at > now() - make_interval(secs => :alive_seconds)"
)
_CLEAR_CLAIMS = _statement("DELETE FROM key_limit_claims WHERE worker = :worker")
_CLAIM = _statement(
    "INSERT INTO key_limit_claims (worker, key_name, allowance, in_flight)"
    " SELECT :worker, key_name, allowance, in_flight"
    " FROM unnest(CAST(:names AS text[]), CAST(:allowances AS integer[]),"
    " CAST(:in_flight AS integer[])) AS claimed (key_name, allowance, in_flight)"
)
_FORGET_WORKERS = _statement(
    "DELETE FROM key_limit_workers"
    " WHERE seen_at < now() - make_interval(secs => :forgotten_seconds)"
)
_LEAVE = _statement("DELETE FROM key_limit_workers WHERE worker = :worker")


def _window_start(quotas: KeyQuotas, window: int) -> datetime:
    return datetime.fromtimestamp(window * quotas.window, UTC)


async def _add_hits(transaction: Queries, quotas: KeyQuotas, report: Report) -> datetime:
    """Add what the worker admitted; the start of the oldest window that still counts."""
    previous = int(time.time() // quotas.window) - 1
    # Windows that no longer count (after syncs failed for a while) are not written.
    slots = sorted(slot for slot in report.hits if slot[1] >= previous)
    if slots:
        await transaction.fetch(
            _ADD_HITS,
            worker=quotas.worker,
            names=[name for name, _ in slots],
            windows=[_window_start(quotas, window) for _, window in slots],
            hits=[report.hits[slot] for slot in slots],
        )
    return _window_start(quotas, previous)


async def _exchange(transaction: Queries, quotas: KeyQuotas, report: Report) -> Plan:
    """Report, read what the others hold, and claim: the whole of a sync."""
    await transaction.fetch(_ONE_AT_A_TIME, lock=_SYNC_LOCK)
    others: dict[str, Any] = {
        "worker": quotas.worker,
        "alive_seconds": _alive_seconds(quotas),
    }
    first_allowances = {
        row["worker"]: row["first_allowance"]
        for row in await transaction.fetch(_OTHER_WORKERS, **others)
    }
    first_allowance = quotas.first_allowance_among(len(first_allowances) + 1)
    await transaction.fetch(_ALIVE, worker=quotas.worker, first_allowance=first_allowance)
    since = await _add_hits(transaction, quotas, report)
    await transaction.fetch(_FORGET_WINDOWS, since=since)
    claims: dict[str, dict[Any, Claim]] = {}
    for row in await transaction.fetch(_OTHER_CLAIMS, **others):
        claims.setdefault(row["key_name"], {})[row["worker"]] = Claim(
            row["allowance"], row["in_flight"]
        )
    hits = {
        (row["key_name"], int(row["window_start"].timestamp()) // quotas.window): row["hits"]
        for row in await transaction.fetch(_HITS, since=since)
    }
    plan = quotas.plan(report, SharedCounts(hits, claims, first_allowances), first_allowance)
    await _claim(transaction, quotas, plan)
    return plan


async def _claim(transaction: Queries, quotas: KeyQuotas, plan: Plan) -> None:
    await transaction.fetch(_CLEAR_CLAIMS, worker=quotas.worker)
    if plan.claims:
        await transaction.fetch(
            _CLAIM,
            worker=quotas.worker,
            names=list(plan.claims),
            allowances=[claim.allowance for claim in plan.claims.values()],
            in_flight=[claim.in_flight for claim in plan.claims.values()],
        )


async def sync(quotas: KeyQuotas, database: Database) -> None:
    """Report this worker's admissions, read everyone's, and claim its part of what each key
    it serves has left; raises when Postgres cannot be reached, and then the worker keeps its
    admissions for the next sync."""
    report = quotas.report()
    try:
        async with database.transaction() as transaction:
            plan = await _exchange(transaction, quotas, report)
    except BaseException:
        quotas.unsent(report)
        raise
    quotas.apply(plan)


@dataclass
class SharedLimits:
    """A worker's share in the per-key limits: its syncs, one at a time."""

    quotas: KeyQuotas
    database: Database
    metrics: KeyLimitMetrics
    _under_way: asyncio.Task[None] | None = field(default=None, init=False)

    async def sync(self) -> None:
        """Sync now, or wait for the sync under way; raises as `sync` does."""
        if self._under_way is None:
            self._under_way = asyncio.create_task(self._sync())
        # Shielded: a request that gives up waiting does not end the sync for the others.
        await asyncio.shield(self._under_way)

    async def _sync(self) -> None:
        outcome = "failed"
        try:
            await sync(self.quotas, self.database)
            outcome = "ok"
        finally:
            self._under_way = None
            self.metrics.syncs.labels(outcome).inc()

    async def claim(self) -> None:
        """A key's allowance ran out: sync now (a failure leaves the allowances as they
        were)."""
        with suppress(Exception):
            await self.sync()

    async def join(self) -> None:
        """At startup: the first sync, so that the others count this worker's first
        allowance before it admits anything (when it fails, the periodic syncs go on
        trying)."""
        try:
            # Bounded: an app may start while Postgres is away, and serve what it can.
            async with asyncio.timeout(max(1.0, self.quotas.sync_seconds)):
                await self.sync()
        except Exception as error:
            logger.warning("the per-key limits could not be shared yet", error=repr(error))
        self.quotas.claim = self.claim

    async def share_periodically(self) -> None:
        """Sync every KEY_LIMITS_SYNC_SECONDS until cancelled; a failing sync is logged once,
        until one succeeds again."""
        quotas, failures = self.quotas, 0
        while True:
            await asyncio.sleep(quotas.sync_seconds)
            try:
                await self.sync()
            except Exception as error:  # the limits go on locally, whatever the failure
                if not failures:
                    logger.warning("the per-key limits could not be shared", error=repr(error))
                failures += 1
                if failures >= _FAILED_SYNCS_ALONE:
                    quotas.alone()
                continue
            if failures:
                logger.info("the per-key limits are shared again", failed_syncs=failures)
            failures = 0
            with suppress(Exception):  # housekeeping: the next sync tries again
                await self.database.fetch(
                    _FORGET_WORKERS, forgotten_seconds=2 * _alive_seconds(quotas)
                )

    async def leave(self) -> None:
        """At shutdown: report the last admissions, and give up this worker's claims."""
        self.quotas.claim = None
        if self._under_way is not None:  # lest it mark this worker alive again afterwards
            with suppress(Exception):
                await self._under_way
        report = self.quotas.report()
        try:
            async with self.database.transaction() as transaction:
                await transaction.fetch(_ONE_AT_A_TIME, lock=_SYNC_LOCK)
                await _add_hits(transaction, self.quotas, report)
                await transaction.fetch(_LEAVE, worker=self.quotas.worker)
        except Exception as error:  # the others take this worker for gone after a few syncs
            logger.warning("the per-key counts could not be handed over", error=repr(error))
