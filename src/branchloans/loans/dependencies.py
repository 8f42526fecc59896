"""What the loans endpoints take from a request: who calls, and the headers and cursor they
send, each checked (a 422 names what is wrong)."""

from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

import structlog
from fastapi import Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError

from branchloans.auth.dependencies import requires
from branchloans.auth.models import Scope
from branchloans.auth.service import Principal
from branchloans.idempotency.models import KEY_MAX_LENGTH
from branchloans.loans.cursor import CursorCodec, Position
from branchloans.loans.listing import LoanFilter
from branchloans.loans.service import ChangeContext
from branchloans.state import AppState, app_state
from branchloans.text import StoredLine


def change_context(principal: Principal) -> ChangeContext:
    """The request id (bound by the request-id middleware) and the calling key's name."""
    return ChangeContext(
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
        actor=principal.name,
    )


WriterDep = Annotated[Principal, Depends(requires(Scope.LOANS_WRITE))]
ManagerDep = Annotated[Principal, Depends(requires(Scope.LOANS_MANAGE))]
IdempotencyKeyHeader = Annotated[
    StoredLine[str] | None,
    Header(
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="A token you choose (printable ASCII, at most 255 characters). A retry "
        "with the same key and the same request returns the first answer, with "
        "`Idempotent-Replayed: true`, instead of acting twice. Keys are kept 24 hours.",
        examples=["3f1c2a4e-8d0b-4d8e-9a53-1f0e2c7b9d11"],
    ),
]


def documented_problem(description: str) -> dict[str, Any]:
    """An OpenAPI response; its body is set to the Problem schema when the document is built."""
    return {"description": description}


LOAN_NOT_FOUND_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: documented_problem("No loan has this id."),
    422: documented_problem("The id is not a UUID."),
}
KEYS_EXHAUSTED_RESPONSE: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "This client stored as many new Idempotency-Keys as the window allows; "
        "retry after `Retry-After` seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
}

READ = [Depends(requires(Scope.LOANS_READ))]
ENTITY_TAGS_MAX_LENGTH = 256
"""Characters an If-Match or If-None-Match header may have: a score of a loan's ETags."""
# A loan's version is a Postgres integer: ten digits at most.
_VERSION_MAX_DIGITS = 10
_STILL_HAS_ETAG = 'if the loan still has this ETag, e.g. `"3"`.'
IfMatchHeader = Annotated[
    str | None,
    Header(max_length=ENTITY_TAGS_MAX_LENGTH, description=f"Only act {_STILL_HAS_ETAG}"),
]
IfNoneMatchHeader = Annotated[
    str | None,
    Header(max_length=ENTITY_TAGS_MAX_LENGTH, description=f"Answer 304 {_STILL_HAS_ETAG}"),
]


def entity_tags(header: str) -> list[str]:
    """The entity tags of an If-Match or If-None-Match header."""
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def versions_in(if_match: str | None) -> set[int] | None:
    """The versions an If-Match header accepts; None when it accepts any (absent or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    # Strong comparison (RFC 9110): a weak tag W/"3" or a malformed one never matches.
    return {
        int(tag[1:-1])
        for tag in entity_tags(if_match)
        if 2 < len(tag) <= _VERSION_MAX_DIGITS + 2
        and tag[0] == tag[-1] == '"'
        and tag[1:-1].isascii()
        and tag[1:-1].isdigit()
    }


CursorQuery = Annotated[
    str | None,
    Query(
        description="Where the page starts: opaque, copied from a `Link` header, and valid only "
        "with the filters of the request that gave it."
    ),
]


@cache  # one codec per application: its keys come from the settings
def cursor_codec(state: AppState) -> CursorCodec:
    """The application's cursor codec, keyed with CURSOR_SIGNING_KEYS."""
    return CursorCodec(
        [key.get_secret_value().encode() for key in state.settings.cursor_signing_keys]
    )


def cursor_position(request: Request, cursor: str | None, where: LoanFilter) -> Position | None:
    """The position a `cursor` made for the filters `where` names; a 422 naming `cursor` when
    it is forged, altered or made for other filters."""
    if cursor is None:
        return None
    try:
        return cursor_codec(app_state(request.app)).decode(cursor, where.canonical())
    except ValueError as error:
        raise RequestValidationError(
            [{"type": "invalid_cursor", "loc": ("query", "cursor"), "msg": str(error)}]
        ) from error


def next_cursor(request: Request, position: Position, where: LoanFilter) -> str:
    """The cursor of the page after `position` in the listing filtered by `where`."""
    return cursor_codec(app_state(request.app)).encode(position, where.canonical())


async def utc_now() -> datetime:
    """The current time (UTC): when a payment without `paid_at` was made, and what "today" is
    for arrears. A dependency, so a test can fix the clock.

    A coroutine, so FastAPI calls it in the event loop rather than in a worker thread.
    """
    return datetime.now(UTC)


NowDep = Annotated[datetime, Depends(utc_now)]
