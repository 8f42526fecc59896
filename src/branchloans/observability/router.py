"""GET /metrics: the Prometheus text exposition, cheap enough to scrape often."""

from fastapi import APIRouter, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from branchloans.state import DatabaseDep, StateDep

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}, "description": "Text exposition format."}},
)
async def metrics(state: StateDep, database: DatabaseDep) -> Response:
    """Every metric; counters summed over all workers, database figures cached a few seconds."""
    await state.metrics.refresh_figures(
        database,
        max_age=state.settings.metrics_cache_seconds,
        seconds=state.settings.health_timeout,
    )
    state.metrics.pool.observe(state.database)
    return Response(
        state.metrics.render(),
        media_type=CONTENT_TYPE_PLAIN_0_0_4,
        headers={"Cache-Control": "no-store"},
    )
