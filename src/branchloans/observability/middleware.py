"""One pure ASGI middleware for what every request owes the operator.

It binds the request id to the logs, names the client, counts the request for Prometheus,
answers an unhandled exception with a 500 problem (logged once, with its traceback) and
writes the request's single access line.
"""

import time
from typing import Any

import structlog
from prometheus_fastapi_instrumentator.routing import _effective_routes, _get_route_name
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchloans.observability import tracing
from branchloans.observability.metrics import (
    STANDARD_METHODS,
    UNMATCHED_HANDLER,
    HttpMetrics,
    method_label,
)
from branchloans.observability.proxies import TrustedProxies
from branchloans.problems import UNEXPECTED_DETAIL, problem_body
from branchloans.request_ids import choose_request_id
from branchloans.responses import ProblemResponse


class RouteTemplates:
    """The route template a request matches (`/api/loans/{loan_id}`), None when none does."""

    def __init__(self) -> None:
        # Only templates without parameters are remembered, and only for the standard
        # methods: the memory is bounded by the routes, never by what clients send.
        self._fixed: dict[tuple[str, str], str] = {}
        self._routes: list[BaseRoute] | None = None

    def template(self, scope: Scope) -> str | None:
        """Resolve the template the way prometheus-fastapi-instrumentator does."""
        key = (scope["method"], scope["path"])
        template = self._fixed.get(key)
        if template is None:
            if self._routes is None:
                # Flattened once: the instrumentator flattens included routers per request.
                self._routes = _effective_routes(scope["app"].routes)
            template = _get_route_name(scope, self._routes)
            if template is not None and "{" not in template and key[0] in STANDARD_METHODS:
                self._fixed[key] = template
        return template


def _read_headers(scope: Scope) -> tuple[bytes | None, str | None]:
    request_id: bytes | None = None
    forwarded: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value
        elif name == b"x-forwarded-for":
            forwarded.append(value)
    return request_id, b",".join(forwarded).decode("latin-1") if forwarded else None


class ObservabilityMiddleware:
    """Request id, client address, HTTP metrics, last-resort 500 and the access line."""

    def __init__(
        self, app: ASGIApp, *, trusted_proxies: TrustedProxies, http_metrics: HttpMetrics | None
    ) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.http_metrics = http_metrics
        self.routes = RouteTemplates()
        # Built once, when the application's middleware stack is built after logging is set up.
        self.logger = structlog.get_logger("branchloans.access").bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request with its id bound, then log and count it."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        offered_id, forwarded_for = _read_headers(scope)
        request_id = choose_request_id(offered_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        peer = scope["client"][0] if scope.get("client") else None
        client = self.trusted_proxies.client(peer, forwarded_for)
        if client != peer:
            scope["client"] = (client, 0)

        route = self.routes.template(scope)
        method = method_label(scope["method"])
        handler = route or UNMATCHED_HANDLER
        metrics = self.http_metrics
        counted = metrics.started(method, handler) if metrics is not None else None

        id_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # Swallowed here, so that neither Starlette nor uvicorn logs it a second time.
            self.logger.exception("unhandled exception", method=scope["method"], path=scope["path"])
            tracing.record_problem("about:blank", 500, error)
            status = 500
            if not response_started:
                body = problem_body(scope["path"], 500, detail=UNEXPECTED_DETAIL)
                await ProblemResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            took = time.perf_counter() - started
            if metrics is not None and counted is not None:
                metrics.finished(counted, method, handler, status, took)
            self._log_access(scope, route, status, took, client)

    def _log_access(
        self, scope: Scope, route: str | None, status: int, took: float, client: str | None
    ) -> None:
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status_code": status,
            "duration_ms": round(took * 1000, 2),
            "client": client,
        }
        log = self.logger.warning if status >= 500 else self.logger.info
        log("Request completed", **fields)
