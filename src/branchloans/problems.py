"""RFC 9457 problem details: the one shape every error of the API takes."""

import asyncio
import re
from collections.abc import Callable, Mapping
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
    type: str = Field(
        description="Stable, machine-readable error kind, e.g. `required`, `too_large`."
    )


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
    if (request_id := current_request_id()) is not None:
        body["request_id"] = request_id
    if (ids := tracing.current_ids()) is not None:
        body["trace_id"] = ids[0]
    body.update(extensions)
    tracing.record_problem(type_, status)
    return body


def problem_response(
    request: Request, status: int, *, headers: Mapping[str, str] | None = None, **fields: Any
) -> ProblemResponse:
    """Build the problem+json response for a failed request; `fields` as `problem_body` takes."""
    body = problem_body(request.url.path, status, **fields)
    return ProblemResponse(body, status_code=status, headers=headers)


def _readable(message: str) -> str:
    # pydantic writes limits as Python reprs ("Decimal('50000')") and prefixes custom errors.
    return _DECIMAL_REPR.sub(r"\1", str(message).removeprefix("Value error, "))


def _text_length(ctx: dict[str, Any], bound: str, words: str) -> str:
    count = ctx[bound]
    return f"{words} {count} character{'' if count == 1 else 's'} long"


# pydantic's error kinds -> (this API's stable `type`, what is wrong and what is accepted).
# Written here, not left to pydantic, because its messages are for developers of validators
# ("Input should be a valid dictionary or object to extract fields from"), not for clients.
# A description is fixed text, or made from the error's context.
_READABLE: dict[str, tuple[str, str | Callable[[dict[str, Any]], str]]] = {
    "missing": ("required", "is required"),
    "string_too_long": (
        "too_long",
        lambda ctx: "must be " + _text_length(ctx, "max_length", "at most"),
    ),
    "string_type": ("not_text", "must be text in double quotes"),
    "string_pattern_mismatch": (
        "invalid_characters",
        "must be printable text, without control characters",
    ),
    "greater_than": ("too_small", lambda ctx: f"must be greater than {ctx['gt']}"),
    "greater_than_equal": ("too_small", lambda ctx: f"must be {ctx['ge']} or more"),
    "less_than": ("too_large", lambda ctx: f"must be less than {ctx['lt']}"),
    "less_than_equal": ("too_large", lambda ctx: f"must be {ctx['le']} or less"),
    "finite_number": ("not_a_number", "must be a finite number, e.g. 1500.00"),
    "timezone_aware": (
        "missing_offset",
        "must include its offset from UTC, e.g. 2025-01-31T09:30:00Z",
    ),
    "enum": ("not_allowed", lambda ctx: f"must be one of {ctx['expected']}"),
    "extra_forbidden": ("unknown_field", "is not a field this request takes; leave it out"),
}
_NUMBER = ("not_a_number", "must be a number, e.g. 1500.00")
_WHOLE_NUMBER = ("not_a_whole_number", "must be a whole number, e.g. 12")
_UUID = ("not_a_uuid", "must be a UUID, e.g. 00000000-0000-0000-0000-000000000001")
_DATETIME = ("not_a_datetime", "must be an ISO 8601 time with an offset, e.g. 2025-01-31T09:30:00Z")
_READABLE.update(
    dict.fromkeys(("decimal_parsing", "decimal_type", "float_parsing", "float_type"), _NUMBER)
)
_READABLE.update(dict.fromkeys(("int_parsing", "int_type", "int_from_float"), _WHOLE_NUMBER))
_READABLE.update(dict.fromkeys(("uuid_parsing", "uuid_type"), _UUID))
_READABLE.update(
    dict.fromkeys(("datetime_parsing", "datetime_type", "datetime_from_date_parsing"), _DATETIME)
)
# The whole body was something other than a JSON object.
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}
_JSON_KINDS = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}


def _predicate(error: Any) -> tuple[str, str]:
    """(stable type, what is wrong and what is accepted) for one pydantic error."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "blank", "must not be blank"
        return "too_short", "must be " + _text_length(ctx, "min_length", "at least")
    if kind in _READABLE:
        code, describe = _READABLE[kind]
        return code, _readable(describe if isinstance(describe, str) else describe(ctx))
    # Our own checks (PydanticCustomError) already speak to the client.
    return kind, _readable(error["msg"])


def _field_error(error: Any) -> dict[str, str]:
    location, *path = error["loc"] or ("body",)
    field = ".".join(str(part) for part in path) or str(location)
    if not path and location == "body":
        if error["type"] == "missing":
            return _body_error("required", "The body must be a JSON object; none was sent")
        if error["type"] in _NOT_AN_OBJECT:
            kind = _JSON_KINDS.get(type(error.get("input")), "a number")
            return _body_error("not_an_object", f"The body must be a JSON object, not {kind}")
    code, predicate = _predicate(error)
    return {
        "field": field,
        "location": str(location),
        "message": f"{field} {predicate}",
        "type": code,
    }


def _body_error(code: str, message: str) -> dict[str, str]:
    return {"field": "body", "location": "body", "message": message, "type": code}


def _position(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


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
    invalid_json = next((error for error in errors if error["type"] == "json_invalid"), None)
    if invalid_json is not None:
        reason = (invalid_json.get("ctx") or {}).get("error", "invalid JSON")
        # FastAPI puts the character offset where parsing stopped after "body" in `loc`.
        offset = invalid_json["loc"][-1] if len(invalid_json["loc"]) > 1 else None
        # FastAPI keeps the text it failed to parse as the error's body.
        text = exc.body if isinstance(exc.body, str) else ""
        where = f" at {_position(text, offset)}" if isinstance(offset, int) and text else ""
        return problem_response(
            request,
            400,
            title="Malformed JSON",
            detail=f"The request body is not valid JSON: {reason}{where}."
            ' Send one JSON object, e.g. {"borrower_id": "usr_123", ...}.',
            type_=PROBLEM_BASE + "malformed-json",
        )
    field_errors = [_field_error(error) for error in errors]
    return problem_response(
        request,
        422,
        title="Validation failed",
        detail="; ".join(dict.fromkeys(error["message"] for error in field_errors)) + ".",
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
