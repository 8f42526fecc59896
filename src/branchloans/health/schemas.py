"""Bodies of the probe endpoints."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class CheckStatus(StrEnum):
    """Outcome of one check."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Check(BaseModel):
    """One dependency's state."""

    status: CheckStatus
    message: str
    age_seconds: float | None = Field(
        None, description="How long ago the check ran, when a recent result was reused."
    )


class ReplicaReport(BaseModel):
    """Where stale-tolerant reads go, when a read replica is configured. Not a check: without
    the replica the primary serves every read, so readiness does not depend on it."""

    state: str = Field(
        description="`in_use`: reads go to the replica; `lagging` (behind more than "
        "`max_lag_seconds`) or `unreachable`: they go to the primary."
    )
    lag_seconds: float | None = Field(description="Replay lag at the last measurement.")
    max_lag_seconds: float


class HealthReport(BaseModel):
    """The service's state: `ok` when every check is healthy, else `error`."""

    status: str
    timestamp: datetime
    checks: dict[str, Check]
    replica: ReplicaReport | None = None


class Liveness(BaseModel):
    """The process answers."""

    status: str = "ok"
