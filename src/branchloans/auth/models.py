"""The `api_keys` table: who may call the API, with which scopes."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ARRAY, CheckConstraint, DateTime, String, func
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
