"""RFC 9457 problem details: the one shape every error of the API takes."""

import asyncio
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from branchloans.db import CONNECTION_LOST, is_outage
from branchloans.observability import tracing
from branchloans.request_ids import current_request_id
from branchloans.responses import ProblemResponse

PROBLEM_BASE = "https://branchloans.com/problems/"

logger = structlog.get_logger(__name__)

_DECIMAL_REPR = re.compile(r"Decimal\('([^']*)'\)")


class FieldError(BaseModel):
    """One invalid part of a request."""

    field: str = Field(description="Dotted path of the offending field, e.g. `amount`.")
    location: str = Field(description="Where the field was sent: body, query, path or header.")
    message: str
    type: str = Field(description="Machine-readable error kind, e.g. `less_than_equal`.")


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="URI identifying the problem type.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="The request path that failed.")
    request_id: str | None = Field(
        default=None, description="The request's X-Request-ID, to find its log lines."
    )
    trace_id: str | None = Field(
        default=None, description="The request's trace id, when tracing is on (MONITORING.md)."
    )
    errors: list[FieldError] | None = Field(
        default=None, description="Each invalid field, for validation problems."
    )


class ProblemError(Exception):
    """Raise anywhere while serving a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = PROBLEM_BASE + slug if slug else "about:blank"
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers
        self.extensions = extensions


UNEXPECTED_DETAIL = "The server failed to handle this request; it has been logged."


def problem_body(
    instance: str,
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str = "about:blank",
    **extensions: Any,
) -> dict[str, Any]:
    """The problem document for a request to `instance`, with the request's id."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = instance
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
    ids = tracing.current_ids()
    if ids is not None:
        body["trace_id"] = ids[0]
    body.update(extensions)
    tracing.record_problem(type_, status)
    return body


def problem_response(
    request: Request,
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """Build the problem+json response for a failed request."""
    body = problem_body(
        request.url.path, status, title=title, detail=detail, type_=type_, **extensions
    )
    return ProblemResponse(body, status_code=status, headers=headers)


def _readable(message: str) -> str:
    # pydantic writes limits as Python reprs ("Decimal('50000')") and prefixes custom errors.
    return _DECIMAL_REPR.sub(r"\1", message.removeprefix("Value error, "))


def _field_error(error: Any) -> dict[str, str]:
    location, *path = error["loc"] or ("body",)
    return {
        "field": ".".join(str(part) for part in path) or str(location),
        "location": str(location),
        "message": _readable(error["msg"]),
        "type": error["type"],
    }


def render_problem(request: Request, exc: ProblemError) -> ProblemResponse:
    """The response a raised `ProblemError` gets."""
    return problem_response(
        request,
        exc.status,
        title=exc.title,
        detail=exc.detail,
        type_=exc.type,
        headers=exc.headers,
        **exc.extensions,
    )


async def _handle_problem(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ProblemError)
    return render_problem(request, exc)


async def _handle_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error["type"] == "json_invalid" for error in errors):
        reason = errors[0].get("ctx", {}).get("error", "invalid JSON")
        return problem_response(
            request,
            400,
            title="Malformed JSON",
            detail=f"The request body is not valid JSON: {reason}.",
            type_=PROBLEM_BASE + "malformed-json",
        )
    field_errors = [_field_error(error) for error in errors]
    fields = ", ".join(dict.fromkeys(error["field"] for error in field_errors))
    return problem_response(
        request,
        422,
        title="Validation failed",
        detail=f"Invalid value for: {fields}.",
        type_=PROBLEM_BASE + "validation-error",
        errors=field_errors,
    )


async def _handle_http(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if exc.detail != phrase else None
    if exc.status_code == 404 and detail is None:
        detail = f"No resource at {request.url.path}."
    headers = exc.headers
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        detail = detail or f"{request.method} is not allowed on {request.url.path}."
    return problem_response(request, exc.status_code, detail=detail, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    # Starlette names only the methods of the first route that matched the path; a path
    # served by several routes (GET and POST /api/loans) must list them all.
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]


async def _handle_database_error(request: Request, error: Exception) -> ProblemResponse:
    if not is_outage(error):
        return await _handle_unexpected(request, error)
    logger.warning("database unavailable", error=repr(error))
    return problem_response(
        request,
        503,
        title="Database unavailable",
        detail="The database cannot be reached right now; retry shortly.",
        type_=PROBLEM_BASE + "database-unavailable",
        headers={"Retry-After": "1"},
    )


async def _handle_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    logger.error("unhandled exception", exc_info=exc)
    tracing.record_problem("about:blank", 500, exc)
    return problem_response(request, 500, detail=UNEXPECTED_DETAIL)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app can raise answer as problem+json."""
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    # A refused or timed-out connection (OSError), a dropped one, an exhausted pool
    # (a TimeoutError) or a server shutting down is an outage (503), not a bug (500).
    for error in (asyncpg.PostgresError, *CONNECTION_LOST):
        if error is not asyncio.CancelledError:
            app.add_exception_handler(error, _handle_database_error)
    # Any other exception is answered and logged by ObservabilityMiddleware: a handler here
    # would run in Starlette's ServerErrorMiddleware, which re-raises, and uvicorn would log
    # the same failure a second time.
