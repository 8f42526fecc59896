"""Request ids: taken from the caller when they are a sane token, else generated."""

import re
import uuid

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128

# Letters, digits and a few separators: nothing that could forge a log line or a header.
_SANE = re.compile(rf"[A-Za-z0-9._:=+/-]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def choose_request_id(offered: bytes | None) -> str:
    """The caller's id when it is a sane token, otherwise a fresh UUID4."""
    if offered is not None and len(offered) <= MAX_REQUEST_ID_LENGTH:
        candidate = offered.decode("latin-1")
        if _SANE.fullmatch(candidate):
            return candidate
    return str(uuid.uuid4())


def current_request_id() -> str | None:
    """The id of the request being handled, as bound for the logs; None outside a request."""
    request_id: str | None = structlog.contextvars.get_contextvars().get("request_id")
    return request_id
