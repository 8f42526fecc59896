"""The application factory."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from branchloans import __version__
from branchloans.config import Settings, get_settings
from branchloans.db import Database
from branchloans.health.router import router as health_router
from branchloans.limits import BodyLimitMiddleware
from branchloans.loans.router import router as loans_router
from branchloans.migrate import head_revision
from branchloans.observability.logs import configure_logging
from branchloans.observability.metrics import Metrics
from branchloans.observability.middleware import ObservabilityMiddleware
from branchloans.observability.proxies import TrustedProxies
from branchloans.observability.router import router as metrics_router
from branchloans.openapi import install_openapi
from branchloans.problems import install_problem_handlers
from branchloans.responses import JSONResponse

DESCRIPTION = """
Microloans: apply for a loan, read loans and portfolio statistics.

Money is exact: amounts and rates are JSON numbers carried as decimals end to end.
Every error is an RFC 9457 `application/problem+json` document; validation problems
list each offending field in `errors`. Every response carries an `X-Request-ID`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; the database engine is opened at startup and closed at shutdown."""
    settings = settings or get_settings()
    configure_logging(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.from_settings(settings)
        app.state.db = database
        pool_watch = (
            asyncio.create_task(metrics.pool.follow(database.engine.pool))
            if settings.metrics_enabled
            else None
        )
        try:
            yield
        finally:
            if pool_watch is not None:
                pool_watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pool_watch
            await database.engine.dispose()
            metrics.close()

    app = FastAPI(
        title="Branch Loans API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        openapi_tags=[
            {"name": "loans", "description": "Loan applications and portfolio statistics."},
            {"name": "health", "description": "Probes for load balancers and orchestrators."},
            {"name": "monitoring", "description": "Prometheus metrics (see MONITORING.md)."},
        ],
    )
    app.state.settings = settings
    app.state.alembic_head = head_revision()
    app.state.metrics = metrics
    install_problem_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so it is the outermost: it sees every response, including the 413 above.
    app.add_middleware(
        ObservabilityMiddleware,
        trusted_proxies=TrustedProxies(settings.trusted_proxies),
        http_metrics=metrics.http if settings.metrics_enabled else None,
    )
    app.include_router(health_router)
    app.include_router(loans_router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    return app
