"""The `api_keys` table (who may call the API, with which scopes) and the shared counts of
the per-key limits."""

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from branchloans.db import Base


class Scope(StrEnum):
    """What a key allows."""

    LOANS_READ = "loans:read"
    LOANS_WRITE = "loans:write"
    LOANS_MANAGE = "loans:manage"


class ApiKey(Base):
    """A client's key; only its SHA-256 is stored, the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_present"),
        CheckConstraint("key_hash ~ '^[0-9a-f]{64}$'", name="key_hash_sha256"),
    )


# The per-key limits' shared counts (auth/sharing.py): UNLOGGED, as they live a minute or two.
_UNLOGGED: dict[str, Any] = {"prefixes": ["UNLOGGED"]}


class KeyLimitWorker(Base):
    """A worker sharing the per-key limits, and when it last synced."""

    __tablename__ = "key_limit_workers"
    __table_args__ = _UNLOGGED

    worker: Mapped[UUID] = mapped_column(primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_allowance: Mapped[int]  # what it may admit of a key it holds no claim on


class KeyLimitHits(Base):
    """The requests a worker admitted for a key in a rate window."""

    __tablename__ = "key_limit_hits"

    key_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # No foreign key: a worker that stopped still spent what it admitted this window.
    worker: Mapped[UUID] = mapped_column(primary_key=True)
    hits: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("hits > 0", name="hits_positive"),
        Index("ix_key_limit_hits_window_start", "window_start"),
        _UNLOGGED,
    )


class KeyLimitClaim(Base):
    """What a worker holds of a key until its next sync."""

    __tablename__ = "key_limit_claims"
    __table_args__ = _UNLOGGED

    worker: Mapped[UUID] = mapped_column(
        ForeignKey("key_limit_workers.worker", ondelete="CASCADE"), primary_key=True
    )
    key_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    allowance: Mapped[int]  # requests it may still admit
    in_flight: Mapped[int]  # requests it is serving
