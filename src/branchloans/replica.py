"""Reads that tolerate staleness, on a streaming replica while it keeps up.

`DATABASE_READ_URL` names the replica (or a Service or Pooler in front of the replicas). Its
lag is measured in the background every `REPLICA_CHECK_INTERVAL` seconds, never per request;
while it is within `REPLICA_MAX_LAG_SECONDS` and answers, `state.get_read_database` hands the
stale-tolerant reads to it. A replica cut off from its primary counts as lagging by the time
since it last heard from it: caught up with a primary it no longer hears is not caught up. A
read the replica fails for want of a connection runs on the primary instead, so a replica
going away costs no request.
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


# How far behind the primary the replica may be, in seconds: an upper bound on the age of the
# newest commit it lacks. A server not in recovery (a promoted replica) is not behind.
# - Streaming and heard from lately: 0 once it has replayed all it received (an idle primary
#   leaves a caught-up replica at 0, however long ago its last write was), else the time since
#   the last transaction it replayed.
# - Streaming but silent: an idle link still carries a message every half wal_receiver_timeout
#   (the standby pings, the primary answers at once), so silence past three quarters of it means
#   the primary is out of reach: the time since the last message, which is how stale the copy
#   may be (less exact once it has unreplayed WAL: the time since its last replayed transaction).
# - No streaming WAL receiver (primary unreachable, slot gone, wrong primary_conninfo): the
#   time since the last transaction it replayed, or since it started.
# `hidden`: a role without pg_read_all_stats sees the receiver's pid, not its status.
_LAG = Statement.compile(
    text(
        "SELECT receiver.pid IS NOT NULL AND receiver.status IS NULL AS hidden, CASE"
        " WHEN NOT pg_is_in_recovery() THEN 0"
        " WHEN receiver.status = 'streaming'"
        "  AND (timeout.ms = 0 OR receiver.silent_ms <= timeout.ms * 0.75) THEN CASE"
        "   WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
        "   ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)"
        "  END"
        " WHEN receiver.status = 'streaming'"
        "  AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
        "  THEN receiver.silent_ms / 1000"
        " ELSE extract(epoch FROM now()"
        "  - coalesce(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))"
        " END::float8 AS lag"
        " FROM (SELECT setting::float8 AS ms FROM pg_settings"
        "  WHERE name = 'wal_receiver_timeout') AS timeout"
        " LEFT JOIN (SELECT pid, status,"
        "  extract(epoch FROM now() - last_msg_receipt_time) * 1000 AS silent_ms"
        "  FROM pg_stat_wal_receiver) AS receiver ON true"
    )
)
# Reads on a replica whose WAL receiver the API cannot see would be blind to its primary.
_RECEIVER_HIDDEN = PermissionError(
    "the role cannot see the replica's WAL receiver: grant it pg_read_all_stats"
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
        if row["hidden"]:
            self._set(ReplicaState.UNREACHABLE, None, _RECEIVER_HIDDEN)
            return
        lag = float(row["lag"])
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
