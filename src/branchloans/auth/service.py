"""Creating, listing, revoking and checking API keys."""

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import asyncpg
from cachetools import TTLCache
from pydantic import StringConstraints, TypeAdapter, ValidationError
from sqlalchemy import bindparam, func, insert, select, update

from branchloans.auth.models import ApiKey, Scope
from branchloans.db import Database, Queries, Statement
from branchloans.text import StoredLine

KEY_PREFIX = "blk_"
_ID_BYTES = 6  # 12 hex characters: the public part that finds the key's row
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and scopes, or the anonymous caller of an open API."""

    name: str | None
    scopes: frozenset[str]


ANONYMOUS = Principal(name=None, scopes=frozenset(Scope))

_KEY_NAME = TypeAdapter[str](
    StoredLine[
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    ]
)


def parse_key_name(value: str) -> str:
    """A key's name as it is stored (trimmed); ValueError saying what is wrong with it."""
    try:
        return _KEY_NAME.validate_python(value)
    except ValidationError as error:
        raise ValueError(
            f"key name {error.errors()[0]['msg'].removeprefix('Value error, ')}"
        ) from None


@dataclass(frozen=True)
class _KeyRecord:
    name: str
    key_hash: str
    scopes: frozenset[str]


class ApiKeyExistsError(Exception):
    """A key with this name exists already."""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_id(key: str) -> str | None:
    key_id, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
    well_formed = key.startswith(KEY_PREFIX) and secret and len(key_id) == _ID_BYTES * 2
    return key_id if well_formed else None


def parse_scopes(text: str) -> list[Scope]:
    """Scopes from a comma-separated list; ValueError names any unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in set(Scope)]
    if unknown or not names:
        raise ValueError(
            f"unknown scope(s): {', '.join(unknown) or '(none given)'}; known: {', '.join(Scope)}"
        )
    return [Scope(name) for name in dict.fromkeys(names)]


@dataclass(frozen=True)
class ApiKeyInfo:
    """What `api-keys list` shows of a key: never the key, nor its hash."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


_CREATE_KEY = Statement.compile(
    insert(ApiKey).values(
        id=bindparam("id"),
        name=bindparam("name"),
        key_hash=bindparam("key_hash"),
        scopes=bindparam("scopes"),
    )
)
_LIST_KEYS = Statement.compile(
    select(ApiKey.id, ApiKey.name, ApiKey.scopes, ApiKey.created_at, ApiKey.revoked_at).order_by(
        ApiKey.created_at, ApiKey.name
    )
)
_REVOKE_KEY = Statement.compile(
    update(ApiKey)
    .where(ApiKey.name == bindparam("name"), ApiKey.revoked_at.is_(None))
    .values(revoked_at=func.now())
    .returning(ApiKey.id)
)


async def create_api_key(queries: Queries, name: str, scopes: Iterable[Scope]) -> str:
    """Store a new key and return it; this is the only time the key itself is seen."""
    key_id = secrets.token_hex(_ID_BYTES)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    try:
        await queries.fetch(
            _CREATE_KEY, id=key_id, name=name, key_hash=_hash(key), scopes=list(scopes)
        )
    except asyncpg.UniqueViolationError as error:
        raise ApiKeyExistsError(name) from error
    return key


async def list_api_keys(queries: Queries) -> list[ApiKeyInfo]:
    """Every key, oldest first (their hashes, never the keys)."""
    return [ApiKeyInfo(*row.values()) for row in await queries.fetch(_LIST_KEYS)]


async def revoke_api_key(queries: Queries, name: str) -> bool:
    """Revoke the key with this name; False when no active key has it."""
    return bool(await queries.fetch(_REVOKE_KEY, name=name))


class KeyCache:
    """Active keys by id for `ttl` seconds, and ids known to be no active key for
    `unknown_ttl` seconds, each bounded to `max_entries`.

    A revoked key stops working within `ttl` seconds; meanwhile most requests cost no query.
    Unknown ids are kept apart, so a flood of made-up ids costs one query each at most and
    never pushes a real key out.
    """

    def __init__(self, ttl: float, unknown_ttl: float = 30, max_entries: int = 10_000) -> None:
        self._known: TTLCache[str, _KeyRecord] = TTLCache(max_entries, ttl)
        self._unknown: TTLCache[str, bool] = TTLCache(max_entries, unknown_ttl)

    def get(self, key_id: str) -> tuple[bool, _KeyRecord | None]:
        """(found, record); record None means "known not to be an active key"."""
        record = self._known.get(key_id)
        if record is not None:
            return True, record
        return key_id in self._unknown, None

    def put(self, key_id: str, record: _KeyRecord | None) -> None:
        """Remember a lookup's outcome; unknown ids too, so guessing again costs no query."""
        if record is None:
            self._unknown[key_id] = True
        else:
            self._known[key_id] = record


_ACTIVE_KEY = Statement.compile(
    select(ApiKey.name, ApiKey.key_hash, ApiKey.scopes).where(
        ApiKey.id == bindparam("key_id"), ApiKey.revoked_at.is_(None)
    )
)


async def _active_key(database: Database, key_id: str) -> _KeyRecord | None:
    row = await database.fetchrow(_ACTIVE_KEY, key_id=key_id)
    return _KeyRecord(row["name"], row["key_hash"], frozenset(row["scopes"])) if row else None


async def authenticate_key(database: Database, cache: KeyCache, key: str) -> Principal | None:
    """The principal a presented key stands for, or None when it is unknown or revoked.

    Looked up in the cache first; the database is asked only on a miss, on a connection
    given back at once, so a request never holds two at a time.
    """
    key_id = _key_id(key)
    record = None
    if key_id is not None:
        found, record = cache.get(key_id)
        if not found:
            record = await _active_key(database, key_id)
            cache.put(key_id, record)
    # Compare even when there is nothing to compare with, so timing tells nothing.
    matches = hmac.compare_digest(_hash(key), record.key_hash if record else _DUMMY_HASH)
    if record is None or not matches:
        return None
    return Principal(name=record.name, scopes=record.scopes)
