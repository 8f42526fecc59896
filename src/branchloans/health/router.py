"""Probe endpoints: open to everyone, never touching the loans table."""

from datetime import UTC, datetime
from functools import cache
from typing import Any

from fastapi import APIRouter, status

from branchloans.health import service
from branchloans.health.schemas import Check, CheckStatus, HealthReport, Liveness, ReplicaReport
from branchloans.responses import JSONResponse
from branchloans.state import AppState, DatabaseDep, StateDep

router = APIRouter(tags=["health"])


def _report(checks: dict[str, Check], replica: ReplicaReport | None = None) -> JSONResponse:
    healthy = all(check.status is CheckStatus.HEALTHY for check in checks.values())
    report = HealthReport(
        status="ok" if healthy else "error",
        timestamp=datetime.now(UTC),
        checks=checks,
        replica=replica,
    )
    return JSONResponse(
        report.model_dump(exclude_none=True),
        status_code=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Cache-Control": "no-store"},
    )


_UNHEALTHY: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthReport, "description": "A check failed; `checks` says which."}
}


@cache  # one per application, so per worker, made on its first probe
def _recent_database_check(state: AppState) -> service.RecentDatabaseCheck:
    return service.RecentDatabaseCheck()


@router.get("/health", response_model=HealthReport, responses=_UNHEALTHY, summary="Health check")
async def health(state: StateDep, database: DatabaseDep) -> JSONResponse:
    """The API and its database, answered within the configured health timeout. The
    database's result is reused for up to one second; its `age_seconds` says how old it is."""
    recent = _recent_database_check(state)
    database_check = await recent.check(database, state.settings.health_timeout)
    return _report({"api": service.API_CHECK, "database": database_check})


@router.get("/liveness", response_model=Liveness, summary="Liveness probe")
async def liveness() -> JSONResponse:
    """The process is up; no dependency is consulted, so a database outage never restarts it."""
    return JSONResponse(Liveness().model_dump(), headers={"Cache-Control": "no-store"})


@router.get(
    "/readiness", response_model=HealthReport, responses=_UNHEALTHY, summary="Readiness probe"
)
async def readiness(state: StateDep, database: DatabaseDep) -> JSONResponse:
    """Ready for traffic: not shutting down, the database answers, and its schema is at this
    code's migration head (or at a newer release's). With a read replica, `replica` says
    where stale-tolerant reads go; a replica that lags or is down leaves the API ready."""
    api_check = service.DRAINING if state.draining.is_set() else service.API_CHECK
    schema_check = await service.check_schema(
        database, state.schema_head, state.known_revisions, state.settings.health_timeout
    )
    replica = None
    if state.replica is not None:
        replica = ReplicaReport(
            state=state.replica.state.value,
            lag_seconds=state.replica.lag_seconds,
            max_lag_seconds=state.replica.max_lag,
        )
    return _report({"api": api_check, "database": schema_check}, replica)
