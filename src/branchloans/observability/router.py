"""GET /metrics: the Prometheus text exposition, cheap enough to scrape often."""

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from branchloans.db import SessionDep
from branchloans.observability.metrics import Metrics

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}, "description": "Text exposition format."}},
)
async def metrics(request: Request, session: SessionDep) -> Response:
    """Every metric; counters summed over all workers, database figures cached a few seconds."""
    app_metrics: Metrics = request.app.state.metrics
    settings = request.app.state.settings
    await app_metrics.database.refresh(
        session, max_age=settings.metrics_cache_seconds, seconds=settings.health_timeout
    )
    app_metrics.pool.observe(request.app.state.db.engine.pool)
    return Response(
        app_metrics.render(),
        media_type=CONTENT_TYPE_PLAIN_0_0_4,
        headers={"Cache-Control": "no-store"},
    )
