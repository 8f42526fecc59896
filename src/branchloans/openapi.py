"""The OpenAPI document, with every error response described as problem+json."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from branchloans.problems import Problem

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# FastAPI's default 422 shape, which this API never sends.
_UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError")
_REPLACEABLE_REFS = {None, "#/components/schemas/HTTPValidationError"}


def _is_error_without_own_body(status: str, response: dict[str, Any]) -> bool:
    # An error response that names a body of its own (the health report) keeps it.
    refs = {media.get("schema", {}).get("$ref") for media in response.get("content", {}).values()}
    return status[0] in "45" and refs <= _REPLACEABLE_REFS


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {"Problem": schema, **definitions}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with each 4xx/5xx response's body set to the Problem schema."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            # HeaderLimitMiddleware answers it before any route.
            responses.setdefault(
                "431", {"description": "A request header is longer than 8 KiB; `errors` names it."}
            )
            if operation.get("security"):
                responses.setdefault(
                    "401", {"description": "No API key, or an unknown or revoked one."}
                )
                responses.setdefault(
                    "403", {"description": "The API key lacks the scope this needs."}
                )
            for status, response in responses.items():
                if _is_error_without_own_body(status, response):
                    response["content"] = {"application/problem+json": {"schema": _PROBLEM_REF}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _UNUSED_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(_problem_schemas())
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi`'s document at /openapi.json, built once on first request."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
