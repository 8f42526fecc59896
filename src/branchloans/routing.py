"""Request parsing shared by every API route."""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from branchloans.problems import ProblemError


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _has_body(request: Request) -> bool:
    headers = request.headers
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


class DecimalJSONRequest(Request):
    """A request whose JSON numbers with a fraction are parsed as `Decimal`, never as float.

    Parsing through float would turn 50000.0000000000001 into 50000.0 and let it past
    the limits; as a Decimal it is refused for what it is.
    """

    async def json(self) -> Any:
        """The body parsed as JSON; NaN and Infinity are malformed JSON here."""
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
            except ValueError as error:
                if isinstance(error, json.JSONDecodeError):
                    raise
                raise json.JSONDecodeError(str(error), body.decode(errors="replace"), 0) from error
        return self._json


class DecimalJSONRoute(APIRoute):
    """An API route that reads its request body with `DecimalJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so it sees the decimal-preserving request."""
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def decimal_json_handler(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if (content_type or _has_body(request)) and not _is_json(content_type):
                raise ProblemError(
                    415,
                    "Send the body as JSON with Content-Type: application/json.",
                    slug="unsupported-media-type",
                    headers={"Accept-Post": "application/json"},
                )
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return decimal_json_handler
