"""The application factory."""

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from branchloans import __version__
from branchloans.auth.dependencies import key_quotas
from branchloans.auth.metrics import key_limit_metrics
from branchloans.auth.sharing import SharedLimits
from branchloans.config import AppEnv, Settings, get_settings
from branchloans.db import Database
from branchloans.docs import install_docs
from branchloans.health.router import router as health_router
from branchloans.idempotency.service import purge_periodically
from branchloans.limits import BodyLimitMiddleware, HeaderLimitMiddleware
from branchloans.loans.metrics import loan_metrics
from branchloans.loans.repayment_router import router as repayments_router
from branchloans.loans.router import router as loans_router
from branchloans.migrate import head_revision, known_revisions
from branchloans.observability.errors import install_error_tracking
from branchloans.observability.logs import configure_logging
from branchloans.observability.metrics import Metrics
from branchloans.observability.middleware import ObservabilityMiddleware
from branchloans.observability.proxies import TrustedProxies
from branchloans.observability.router import MetricsPortGate
from branchloans.observability.router import router as metrics_router
from branchloans.observability.tracing import current_provider, flush, instrument, start_tracing
from branchloans.openapi import install_openapi
from branchloans.problems import install_problem_handlers
from branchloans.replica import ReadReplica
from branchloans.responses import JSONResponse
from branchloans.security_headers import SecurityHeadersMiddleware
from branchloans.shutdown import CloseWhenDraining, drain_on_sigterm, wait_for_database
from branchloans.state import AppState

logger = structlog.get_logger(__name__)
# What is left of the spans gets this long at shutdown, within the pod's grace period.
TRACE_FLUSH_SECONDS = 5.0

DESCRIPTION = """
Microloans: apply for a loan, read loans and portfolio statistics.

Money is exact: amounts and rates are JSON numbers carried as decimals end to end.
Every error is an RFC 9457 `application/problem+json` document; validation problems
list each offending field in `errors`. Every response carries an `X-Request-ID`.

Consistency: where a read replica is configured, list pages, `/api/stats`, a loan's events
and its schedule may trail a write by up to `REPLICA_MAX_LAG_SECONDS` (5 s by default).
A write's answer, `GET /api/loans/{loan_id}`, a loan's repayments and any read sent with
`If-None-Match` or `If-Match` always read the primary, so a caller sees its own writes there.
"""


LOANS_DESCRIPTION = """
Loan applications, their lifecycle and portfolio statistics.

A loan moves only through these actions (each a `POST /api/loans/{loan_id}/<action>`):

```
pending --approve--> approved --disburse--> disbursed --repay----> repaid
   |                    |                       |
   +------reject------->+--reject--> rejected   +--default--> defaulted
```

`rejected`, `repaid` and `defaulted` are final. Any other action answers 409 with the
loan's `current_status` and its `allowed_actions`. Every change is recorded in the loan's
history (`GET /api/loans/{loan_id}/events`). Responses carry the loan's version as `ETag`;
send it back in `If-Match` to act only if nobody changed the loan meanwhile (else 412).
`default` needs a payment past due, and records the outstanding amount it writes off.
"""

REPAYMENTS_DESCRIPTION = """
Payments on disbursed loans, allocated to the schedule, and portfolio at risk.

A payment made on day D pays, oldest instalment first: overdue interest, then overdue
principal, then the current instalment (first due on or after D: interest, then principal),
then the principal of later instalments. The payoff amount is all unpaid principal plus the
unpaid interest of overdue and current instalments; reaching it repays the loan, exceeding it
is a 422. PAR30 (PAR90) in `GET /api/stats` is the outstanding principal of disbursed loans
with a payment more than 30 (90) days overdue, and its share of the currency's outstanding
principal.
"""


class SuperuserRefusedError(RuntimeError):
    """Production connected as a superuser, which no privilege or trigger restrains."""


async def _refuse_superuser(database: Database) -> None:
    # Production needs the database at startup for this: DB_STARTUP_TIMEOUT bounds the wait.
    role, superuser = await database.role()
    if superuser:
        message = (
            f"APP_ENV=production refuses to run as the superuser {role!r}: connect as the "
            "API's own role (DATABASE_URL), which `branchloans migrate` creates"
        )
        logger.error(message)
        await database.close()
        raise SuperuserRefusedError(message)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; the database pool is opened at startup and closed at shutdown."""
    settings = settings or get_settings()
    configure_logging(settings)
    metrics = Metrics()
    # Domains register their metrics with the application's.
    loan_metrics(metrics)
    draining = threading.Event()
    # One provider per worker process: a test may have started one already.
    tracer_provider = current_provider() or start_tracing()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = await Database.open(settings)
        replica = None
        if settings.database_read_url is not None:
            replica = ReadReplica(
                await Database.open(settings, settings.database_read_url.encoded_string()),
                settings.replica_max_lag_seconds,
            )
        state = app.state.branchloans = AppState(
            settings=settings,
            database=database,
            metrics=metrics,
            draining=draining,
            schema_head=head_revision(),
            known_revisions=known_revisions(),
            replica=replica,
        )
        if settings.db_startup_timeout:
            await wait_for_database(database, settings.db_startup_timeout)
        if settings.app_env is AppEnv.PRODUCTION:
            await _refuse_superuser(database)
        if not settings.requires_auth:
            logger.warning(
                "authentication is off: anyone who can reach the API may use it",
                app_env=settings.app_env.value,
            )
        metrics_unserved = settings.metrics_port is None and not settings.metrics_on_api_port
        if settings.metrics_enabled and metrics_unserved:
            logger.warning("metrics are counted but served nowhere: set METRICS_PORT")
        jobs: list[Coroutine[Any, Any, None]] = []
        shared_limits = None
        if settings.limits_keys:
            shared_limits = SharedLimits(key_quotas(state), database, key_limit_metrics(metrics))
            await shared_limits.join()
            jobs.append(shared_limits.share_periodically())
        if settings.idempotency_purge_interval:
            jobs.append(purge_periodically(database, settings.idempotency_purge_interval))
        if settings.metrics_enabled:
            jobs.append(metrics.follow(database))
        if replica is not None:
            # Measured before the first read: until then reads go to the primary.
            jobs.append(replica.follow(settings.replica_check_interval, settings.health_timeout))
            if settings.metrics_enabled:
                jobs.append(metrics.replica().follow(replica))
        background = [asyncio.create_task(job) for job in jobs]
        try:
            with drain_on_sigterm(draining, settings.shutdown_drain_seconds):
                yield
        finally:
            for task in background:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            if shared_limits is not None:
                await shared_limits.leave()
            await database.close()
            if replica is not None:
                await replica.database.close()
            metrics.close()
            if tracer_provider is not None:
                # Off the event loop: the exporter sends synchronously.
                await asyncio.to_thread(flush, tracer_provider, TRACE_FLUSH_SECONDS)

    app = FastAPI(
        title="Branch Loans API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        default_response_class=JSONResponse,
        openapi_tags=[
            {"name": "loans", "description": LOANS_DESCRIPTION},
            {"name": "repayments", "description": REPAYMENTS_DESCRIPTION},
            {"name": "health", "description": "Probes for load balancers and orchestrators."},
            {"name": "monitoring", "description": "Prometheus metrics (see MONITORING.md)."},
        ],
    )
    install_problem_handlers(app)
    install_openapi(app)
    install_error_tracking(app, settings)  # innermost middleware: sees exceptions first
    install_docs(app)
    if settings.metrics_enabled:
        app.add_middleware(
            MetricsPortGate,
            metrics_port=settings.metrics_port,
            on_api_port=settings.metrics_on_api_port,
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeaderLimitMiddleware)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Location", "Idempotent-Replayed", "X-Request-ID"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(CloseWhenDraining, draining=draining)
    # Added last, so it is the outermost: it sees every response, including the 413 above.
    app.add_middleware(
        ObservabilityMiddleware,
        trusted_proxies=TrustedProxies(settings.trusted_proxies),
        http_metrics=metrics.http if settings.metrics_enabled else None,
    )
    if tracer_provider is not None:
        instrument(app, tracer_provider)
    app.include_router(health_router)
    app.include_router(loans_router)
    app.include_router(repayments_router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    return app
