"""The `idempotency_keys` table: one stored answer per client and key."""

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, LargeBinary, SmallInteger, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from branchloans.db import Base

KEY_MAX_LENGTH = 255


class IdempotencyKey(Base):
    """The first answer to a request sent with an `Idempotency-Key`.

    The row is inserted in the same transaction as the request's effect, so either both
    are committed or neither is; a second request with the same key waits on the row
    until the first transaction ends.
    """

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(2048))
    # NULL only while the first request runs; nobody else sees the row before it commits.
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("length(key) > 0", name="key_present"),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
    )


# The purge looks for expired keys without scanning the table.
Index("ix_idempotency_keys_expires_at", IdempotencyKey.expires_at)
# The cap per client counts a client's latest keys without scanning them all.
Index("ix_idempotency_keys_scope_created_at", IdempotencyKey.scope, IdempotencyKey.created_at)
