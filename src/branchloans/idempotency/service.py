"""Running a write at most once per Idempotency-Key, and forgetting keys when they expire."""

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from fastapi import Request, Response
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.config import Settings
from branchloans.db import Database
from branchloans.idempotency.models import IdempotencyKey
from branchloans.problems import ProblemError, render_problem

logger = structlog.get_logger(__name__)

# Headers that belong to the answer itself; everything else (dates, request ids) is per response.
_STORED_HEADERS = ("content-type", "location", "etag")
_LOCK_NOT_AVAILABLE = "55P03"


class KeyReusedError(ProblemError):
    """The key already answered a different request."""

    def __init__(self) -> None:
        super().__init__(
            422,
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request.",
            slug="idempotency-key-reused",
            title="Idempotency-Key reused",
        )


class KeyInUseError(ProblemError):
    """The first request with this key is still running."""

    def __init__(self) -> None:
        super().__init__(
            409,
            "A request with this Idempotency-Key is still being processed; retry later.",
            slug="idempotency-key-in-use",
            title="Request in progress",
            headers={"Retry-After": "1"},
        )


async def request_fingerprint(request: Request) -> str:
    """SHA-256 of the method, route, path parameters and the body as parsed."""
    body = await request.body()
    route = request.scope.get("route")
    parts = {
        "method": request.method,
        "route": getattr(route, "path", request.url.path),
        "path_params": request.path_params,
        "body": await request.json() if body else None,
    }
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _claim(
    session: AsyncSession, request: Request, scope: str, key: str, fingerprint: str
) -> IdempotencyKey | None:
    """Take the key for this request, or return the answer stored under it.

    The INSERT waits while another transaction holds the same key, so a concurrent retry
    resumes once the first request committed (and then replays it) or rolled back (and
    then runs). An expired key is taken over as if it were new.
    """
    settings: Settings = request.app.state.settings
    await session.execute(
        text("SELECT set_config('lock_timeout', :timeout, true)"),
        {"timeout": f"{int(settings.idempotency_lock_timeout * 1000)}ms"},
    )
    fresh = {
        "fingerprint": fingerprint,
        "method": request.method,
        "path": request.url.path,
        "response_status": None,
        "response_headers": None,
        "response_body": None,
        "created_at": func.now(),
        "expires_at": func.now() + timedelta(hours=settings.idempotency_key_ttl_hours),
    }
    claim = (
        insert(IdempotencyKey)
        .values(scope=scope, key=key, **fresh)
        .on_conflict_do_update(
            index_elements=[IdempotencyKey.scope, IdempotencyKey.key],
            set_=fresh,
            where=IdempotencyKey.expires_at <= func.now(),
        )
        .returning(IdempotencyKey.key)
    )
    try:
        won = await session.scalar(claim)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise KeyInUseError from error
        raise
    await session.execute(text("SELECT set_config('lock_timeout', '0', true)"))
    if won is not None:
        return None
    stored: IdempotencyKey | None = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    )
    # Only a purge racing with this request can remove the row in between.
    if stored is None or stored.response_status is None:
        raise KeyInUseError
    return stored


def _replay(stored: IdempotencyKey, fingerprint: str) -> Response:
    if stored.fingerprint != fingerprint:
        raise KeyReusedError
    assert stored.response_status is not None
    assert stored.response_body is not None
    return Response(
        content=stored.response_body,
        status_code=stored.response_status,
        headers={**(stored.response_headers or {}), "Idempotent-Replayed": "true"},
    )


async def run_write(
    session: AsyncSession,
    request: Request,
    key: str | None,
    scope: str,
    operation: Callable[[], Awaitable[Response]],
) -> Response:
    """Run a write and commit it; with a key, at most once per (scope, key).

    The first request's answer is stored in the same transaction as its effect, and a
    repeat of the same request replays it byte for byte. Validation failures never get
    here and 5xx failures roll everything back, so neither is stored. Problems the
    operation raises (404, 409, 412) undo its effect but are stored and replayed.
    """
    if key is None:
        response = await operation()
        await session.commit()
        return response

    fingerprint = await request_fingerprint(request)
    stored = await _claim(session, request, scope, key, fingerprint)
    if stored is not None:
        return _replay(stored, fingerprint)
    try:
        async with session.begin_nested():
            response = await operation()
    except ProblemError as problem:
        if problem.status >= 500:
            raise
        response = render_problem(request, problem)
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(
            response_status=response.status_code,
            response_headers={
                name: response.headers[name] for name in _STORED_HEADERS if name in response.headers
            },
            response_body=bytes(response.body),
        )
    )
    await session.commit()
    return response


async def purge_expired_keys(
    session: AsyncSession, *, batch_size: int = 1000, max_batches: int | None = None
) -> int:
    """Delete expired keys in batches of `batch_size`, committing each; returns how many."""
    purged = batches = 0
    while max_batches is None or batches < max_batches:
        expired = (
            select(IdempotencyKey.scope, IdempotencyKey.key)
            .where(IdempotencyKey.expires_at <= func.now())
            .limit(batch_size)
            .with_for_update(skip_locked=True)
            .cte("expired")
        )
        result = await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.scope == expired.c.scope, IdempotencyKey.key == expired.c.key
            )
        )
        await session.commit()
        deleted = int(getattr(result, "rowcount", 0))
        purged, batches = purged + deleted, batches + 1
        if deleted < batch_size:
            break
    return purged


async def purge_periodically(database: Database, interval: float) -> None:
    """Purge expired keys every `interval` seconds, a few batches at a time, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with database.sessionmaker() as session:
                purged = await purge_expired_keys(session, max_batches=10)
            if purged:
                logger.info("purged expired idempotency keys", count=purged)
        except Exception as error:  # the next round tries again; the service must not stop
            logger.warning("idempotency key purge failed", error=repr(error))
