"""Running a write at most once per Idempotency-Key, and forgetting keys when they expire."""

import asyncio
import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog
from fastapi import Request, Response
from sqlalchemy import Interval, String, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from branchloans.config import Settings
from branchloans.db import Database, Statement, Transaction
from branchloans.idempotency.models import IdempotencyKey
from branchloans.observability import tracing
from branchloans.problems import ProblemError, render_problem

logger = structlog.get_logger(__name__)

# Headers that belong to the answer itself; everything else (dates, request ids) is per response.
_STORED_HEADERS = ("content-type", "location", "etag")


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


class TooManyKeysError(ProblemError):
    """The client stored as many new keys as a window allows."""

    def __init__(self, limit: int, window: float, retry_after: int) -> None:
        super().__init__(
            429,
            f"This client stored {limit} Idempotency-Keys in the last {window:g} seconds, the "
            f"most allowed; retry in {retry_after} s, or retry earlier requests with their own "
            "keys.",
            slug="idempotency-keys-exhausted",
            title="Too many Idempotency-Keys",
            headers={"Retry-After": str(retry_after)},
            limit=limit,
            window_seconds=window,
        )


# Problems about the loan's current state, which may change: a retry must see the first
# answer, not a new one (a default refused as "nothing past due" must not succeed a week
# later under the same key). A 404 is not stored: nothing exists to change, and a retry
# answers it again without leaving a row per random id.
_REPLAYED_PROBLEMS = frozenset({409, 412, 422})


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


_SET_LOCK_TIMEOUT = Statement.compile(
    select(func.set_config("lock_timeout", bindparam("timeout", type_=String), text("true")))
)


def _claim_statement() -> Statement:
    fresh = {
        "fingerprint": bindparam("fingerprint"),
        "method": bindparam("method"),
        "path": bindparam("path"),
        "response_status": None,
        "response_headers": None,
        "response_body": None,
        "created_at": func.now(),
        "expires_at": func.now() + bindparam("ttl", type_=Interval),
    }
    return Statement.compile(
        insert(IdempotencyKey)
        .values(scope=bindparam("scope"), key=bindparam("key"), **fresh)
        .on_conflict_do_update(
            index_elements=[IdempotencyKey.scope, IdempotencyKey.key],
            set_=fresh,
            where=IdempotencyKey.expires_at <= func.now(),
        )
        .returning(IdempotencyKey.key)
    )


_CLAIM = _claim_statement()
_THIS_KEY = (IdempotencyKey.scope == bindparam("scope")) & (IdempotencyKey.key == bindparam("key"))
_READ_ANSWER = Statement.compile(
    select(
        IdempotencyKey.fingerprint,
        IdempotencyKey.response_status,
        IdempotencyKey.response_headers,
        IdempotencyKey.response_body,
    ).where(_THIS_KEY)
)
_STORE_ANSWER = Statement.compile(
    update(IdempotencyKey)
    .where(_THIS_KEY)
    .values(
        response_status=bindparam("status"),
        response_headers=bindparam("headers"),
        response_body=bindparam("body"),
    )
)


def _recent_keys_statement() -> Statement:
    # At most limit + 1 index entries are read, oldest first, however many the client has.
    window = bindparam("window", type_=Interval)
    recent = (
        select(IdempotencyKey.created_at)
        .where(
            IdempotencyKey.scope == bindparam("scope"),
            IdempotencyKey.created_at > func.now() - window,
        )
        .order_by(IdempotencyKey.created_at)
        .limit(bindparam("limit") + 1)
        .subquery()
    )
    frees_up = func.min(recent.c.created_at) + window - func.now()
    return Statement.compile(select(func.count(), frees_up).select_from(recent))


_RECENT_KEYS = _recent_keys_statement()


async def _refuse_beyond_cap(transaction: Transaction, settings: Settings, scope: str) -> None:
    """TooManyKeysError when the key just claimed is one more than the client's window allows.

    Counted from the table, so every worker and instance shares the count; concurrent claims
    not yet committed are not seen, so a burst may pass the cap by the requests in flight.
    """
    limit = settings.idempotency_keys_per_client
    window = timedelta(seconds=settings.idempotency_key_window_seconds)
    row = await transaction.fetchrow(_RECENT_KEYS, scope=scope, window=window, limit=limit)
    assert row is not None
    stored, frees_up = row
    if stored > limit:
        retry_after = max(1, math.ceil(frees_up.total_seconds()))
        raise TooManyKeysError(limit, settings.idempotency_key_window_seconds, retry_after)


@dataclass(frozen=True)
class _StoredAnswer:
    fingerprint: str
    status: int | None
    headers: dict[str, str] | None
    body: bytes | None


async def _claim(
    transaction: Transaction,
    request: Request,
    settings: Settings,
    scope: str,
    key: str,
    fingerprint: str,
) -> _StoredAnswer | None:
    """Take the key for this request, or return the answer stored under it.

    The INSERT waits while another transaction holds the same key, so a concurrent retry
    resumes once the first request committed (and then replays it) or rolled back (and
    then runs). An expired key is taken over as if it were new.
    """
    timeout_ms = int(settings.idempotency_lock_timeout * 1000)
    await transaction.fetch(_SET_LOCK_TIMEOUT, timeout=f"{timeout_ms}ms")
    try:
        won = await transaction.fetchrow(
            _CLAIM,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=request.method,
            path=request.url.path,
            ttl=timedelta(hours=settings.idempotency_key_ttl_hours),
        )
    except asyncpg.LockNotAvailableError as error:
        raise KeyInUseError from error
    await transaction.fetch(_SET_LOCK_TIMEOUT, timeout="0")
    if won is not None:
        await _refuse_beyond_cap(transaction, settings, scope)
        return None
    row = await transaction.fetchrow(_READ_ANSWER, scope=scope, key=key)
    # Only a purge racing with this request can remove the row in between.
    if row is None or row["response_status"] is None:
        raise KeyInUseError
    return _StoredAnswer(*row.values())


def _replay(stored: _StoredAnswer, fingerprint: str) -> Response:
    if stored.fingerprint != fingerprint:
        raise KeyReusedError
    assert stored.status is not None
    assert stored.body is not None
    return Response(
        content=stored.body,
        status_code=stored.status,
        headers={**(stored.headers or {}), "Idempotent-Replayed": "true"},
    )


async def run_once(
    transaction: Transaction,
    request: Request,
    settings: Settings,
    *,
    scope: str,
    key: str,
    operation: Callable[[], Awaitable[Response]],
) -> Response:
    """Run a write at most once per (scope, key), in the caller's transaction.

    The first request's answer is stored in the same transaction as its effect, and a
    repeat of the same request replays it byte for byte. Validation failures never get
    here; 5xx failures, a 404 and a client over its cap of new keys (429) are raised, so the
    caller's transaction rolls back with the claimed key. Problems about the loan's state
    (409, 412, 422) undo the operation's effect but are stored and replayed.
    """
    fingerprint = await request_fingerprint(request)
    stored = await _claim(transaction, request, settings, scope, key, fingerprint)
    if stored is not None:
        response = _replay(stored, fingerprint)
        tracing.add_event("idempotency.replay", {"http.response.status_code": response.status_code})
        return response
    try:
        async with transaction.savepoint():
            response = await operation()
    except ProblemError as problem:
        if problem.status not in _REPLAYED_PROBLEMS:
            raise
        response = render_problem(request, problem)
    await transaction.fetch(
        _STORE_ANSWER,
        scope=scope,
        key=key,
        status=response.status_code,
        headers={
            name: response.headers[name] for name in _STORED_HEADERS if name in response.headers
        },
        body=bytes(response.body),
    )
    return response


def _purge_statement() -> Statement:
    expired = (
        select(IdempotencyKey.scope, IdempotencyKey.key)
        .where(IdempotencyKey.expires_at <= func.now())
        .limit(bindparam("batch_size"))
        .with_for_update(skip_locked=True)
        .cte("expired")
    )
    deleted = (
        delete(IdempotencyKey)
        .where(IdempotencyKey.scope == expired.c.scope, IdempotencyKey.key == expired.c.key)
        .returning(IdempotencyKey.key)
        .cte("deleted")
    )
    return Statement.compile(select(func.count()).select_from(deleted))


_PURGE_BATCH = _purge_statement()


async def purge_expired_keys(
    database: Database, *, batch_size: int = 1000, max_batches: int | None = None
) -> int:
    """Delete expired keys in batches of `batch_size`, each its own transaction; how many."""
    purged = batches = 0
    while max_batches is None or batches < max_batches:
        row = await database.fetchrow(_PURGE_BATCH, batch_size=batch_size)
        deleted = int(row[0]) if row else 0
        purged, batches = purged + deleted, batches + 1
        if deleted < batch_size:
            break
    return purged


async def purge_periodically(database: Database, interval: float) -> None:
    """Purge expired keys every `interval` seconds, a few batches at a time, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            purged = await purge_expired_keys(database, max_batches=10)
            if purged:
                logger.info("purged expired idempotency keys", count=purged)
        except Exception as error:  # the next round tries again; the service must not stop
            logger.warning("idempotency key purge failed", error=repr(error))
