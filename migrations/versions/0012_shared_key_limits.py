"""Tables through which every worker of every instance shares the per-key limits.

Each worker writes only its own rows: that it is alive (and its first allowance), the requests
it admitted per key and rate window, and its claim on each key it serves (what it may still
admit, what it has in flight); each reads everyone's. They are UNLOGGED: the counts live a
window or two, a crash that empties them only forgives the keys their last minute, and they
cost no WAL (nor reach a replica, where nothing reads them).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "key_limit_workers",
        sa.Column("worker", sa.Uuid(), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_allowance", sa.Integer(), nullable=False),
        prefixes=["UNLOGGED"],
    )
    op.create_table(
        "key_limit_hits",
        sa.Column("key_name", sa.String(100), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        # No foreign key: a worker that stopped still spent what it admitted this window.
        sa.Column("worker", sa.Uuid(), primary_key=True),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("hits > 0", name="hits_positive"),
        prefixes=["UNLOGGED"],
    )
    op.create_index("ix_key_limit_hits_window_start", "key_limit_hits", ["window_start"])
    op.create_table(
        "key_limit_claims",
        sa.Column(
            "worker",
            sa.Uuid(),
            sa.ForeignKey("key_limit_workers.worker", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key_name", sa.String(100), primary_key=True),
        sa.Column("allowance", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("key_limit_claims")
    op.drop_table("key_limit_hits")
    op.drop_table("key_limit_workers")
