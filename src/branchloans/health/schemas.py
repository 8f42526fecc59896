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
        default=None,
        description="How long ago the check ran, when a recent result was reused.",
    )


class HealthReport(BaseModel):
    """The service's state: `ok` when every check is healthy, else `error`."""

    status: str
    timestamp: datetime
    checks: dict[str, Check]


class Liveness(BaseModel):
    """The process answers."""

    status: str = "ok"
