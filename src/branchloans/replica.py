"""Reads that tolerate staleness, on a streaming replica while it keeps up.

`DATABASE_READ_URL` names the replica (or a Service or Pooler in front of the replicas). Its
lag is measured in the background every `REPLICA_CHECK_INTERVAL` seconds, never per request;
while it is within `REPLICA_MAX_LAG_SECONDS` and answers, `state.get_read_database` hands the
stale-tolerant reads to it. A read the replica fails for want of a connection runs on the
primary instead, so a replica going away costs no request.
"""

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text

from branchloans.db import Database, Queries, Statement, is_outage

logger = structlog.get_logger(__name__)


class ReplicaState(StrEnum):
    """Whether reads go to the replica, and if not, why."""

    IN_USE = "in_use"
    LAGGING = "lagging"
    UNREACHABLE = "unreachable"


# Seconds since the replica last replayed a transaction, counted only while it has received
# WAL it has not replayed: an idle primary leaves a caught-up replica at 0, however long ago
# its last write was. A server that is not in recovery (a promoted replica) has no lag.
_LAG = Statement.compile(
    text(
        "SELECT CASE"
        " WHEN NOT pg_is_in_recovery() THEN 0"
        " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
        " ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)"
        " END::float8"
    )
)
# A hot standby cancels a query whose rows replay must remove: the primary has them.
_RECOVERY_CONFLICT = "40001"


@dataclass
class ReadReplica:
    """The replica's pool, and what the last measurement of its lag found."""

    database: Database
    max_lag: float
    state: ReplicaState = ReplicaState.UNREACHABLE  # until the first measurement
    lag_seconds: float | None = None
    _last_logged: ReplicaState | None = field(default=None, repr=False)

    @property
    def in_use(self) -> bool:
        """Whether stale-tolerant reads go to the replica now."""
        return self.state is ReplicaState.IN_USE

    async def measure(self, seconds: float) -> None:
        """Measure the lag (within `seconds`) and decide whether the replica is used."""
        try:
            async with asyncio.timeout(seconds):
                row = await self.database.fetchrow(_LAG)
        except Exception as error:  # whatever it is, reads are safe on the primary
            self._set(ReplicaState.UNREACHABLE, None, error)
            return
        assert row is not None
        lag = float(row[0])
        self._set(ReplicaState.IN_USE if lag <= self.max_lag else ReplicaState.LAGGING, lag)

    def lost(self, error: BaseException) -> None:
        """A read found the replica unusable: the primary serves until a measurement succeeds."""
        self._set(ReplicaState.UNREACHABLE, None, error)

    def _set(
        self, state: ReplicaState, lag: float | None, error: BaseException | None = None
    ) -> None:
        self.state, self.lag_seconds = state, lag
        if state is not self._last_logged:
            log = logger.info if state is ReplicaState.IN_USE else logger.warning
            log(
                "read replica " + state.value.replace("_", " "),
                lag_seconds=lag,
                max_lag_seconds=self.max_lag,
                error=repr(error) if error else None,
            )
            self._last_logged = state

    async def follow(self, interval: float, seconds: float) -> None:
        """Measure every `interval` seconds, for as long as the application runs."""
        while True:
            await self.measure(seconds)
            await asyncio.sleep(interval)


def _replica_failed(error: BaseException) -> bool:
    # An outage includes an exhausted pool (PoolTimeoutError is a TimeoutError, an OSError).
    return is_outage(error) or getattr(error, "sqlstate", None) == _RECOVERY_CONFLICT


@dataclass(frozen=True)
class ReplicaReads(Queries):
    """Statements on the replica; on the primary when the replica cannot answer them, or
    answers with no row at all: a loan created a moment ago may not be replayed yet, and
    "not found" must not be stale (an empty page costs a second read, on the primary).

    Only reads come here, so running one again on the primary is safe.
    """

    replica: ReadReplica
    primary: Database

    async def fetch(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        """Every row the statement returns, from the replica or else the primary."""
        try:
            rows = await self.replica.database.fetch(statement, **values)
        except Exception as error:
            if not _replica_failed(error):
                raise
            self.replica.lost(error)
        else:
            if rows:
                return rows
        return await self.primary.fetch(statement, **values)
