"""JSON responses that keep `Decimal` money exact on the wire."""

import uuid
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _encode_extra(value: object) -> orjson.Fragment | str:
    if isinstance(value, Decimal):
        # Written as the number's own digits: 15000.10 stays 15000.10, never a binary float.
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID subclass is not orjson's uuid.UUID
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dump_json(content: Any) -> bytes:
    """Serialize to JSON with decimals as exact numbers and UTC datetimes ending in Z."""
    return orjson.dumps(content, default=_encode_extra, option=_OPTIONS)


class JSONResponse(StarletteJSONResponse):
    """`application/json` rendered by `dump_json`; a Starlette JSONResponse, so OpenAPI knows it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dump_json(content)


class ProblemResponse(JSONResponse):
    """An RFC 9457 problem document."""

    media_type = "application/problem+json"
