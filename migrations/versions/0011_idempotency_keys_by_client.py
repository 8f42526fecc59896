"""Idempotency keys by client and time: how many keys a client stored lately, read from an
index rather than the table, so the service can cap keys per client.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_idempotency_keys_scope_created_at", "idempotency_keys", ["scope", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_scope_created_at", table_name="idempotency_keys")
