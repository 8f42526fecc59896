"""GET /metrics: the Prometheus text exposition, cheap enough to scrape often, on a port of
its own (METRICS_PORT)."""

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Receive, Scope, Send

from branchloans.problems import problem_response
from branchloans.state import DatabaseDep, StateDep

METRICS_PATH = "/metrics"

router = APIRouter(tags=["monitoring"])


class MetricsPortGate:
    """The metrics port answers /metrics and nothing else; the API's port answers everything
    else, and /metrics only when told (development without a METRICS_PORT).

    The port a request came in on is the local end of its TCP connection (the ASGI `server`),
    which no client can forge; the same workers listen on both ports.
    """

    def __init__(self, app: ASGIApp, *, metrics_port: int | None, on_api_port: bool) -> None:
        self.app = app
        self.metrics_port = metrics_port
        self.on_api_port = on_api_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            # The app's own 404 for a path it does not have: nothing says a metrics port exists.
            request = Request(scope)
            detail = f"No resource at {request.url.path}."
            return await problem_response(request, 404, detail=detail)(scope, receive, send)
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        server = scope.get("server")
        wants_metrics: bool = scope["path"] == METRICS_PATH
        if self.metrics_port is not None and server is not None and server[1] == self.metrics_port:
            return wants_metrics
        return not wants_metrics or self.on_api_port


@router.get(
    METRICS_PATH,
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
