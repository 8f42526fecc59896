"""Create the loans table.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "approved", "rejected", "disbursed", "repaid", "defaulted")


def upgrade() -> None:
    op.create_table(
        "loans",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("borrower_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*STATUSES, name="loanstatus", native_enum=False, length=16),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("term_months", sa.Integer(), nullable=True),
        sa.Column("interest_rate_apr", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0 AND amount <= 50000", name=op.f("ck_loans_amount_range")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_loans_currency_code")),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{status}'" for status in STATUSES) + ")",
            name=op.f("ck_loans_status_known"),
        ),
        sa.CheckConstraint(
            "term_months IS NULL OR term_months BETWEEN 1 AND 360",
            name=op.f("ck_loans_term_months_range"),
        ),
        sa.CheckConstraint(
            "interest_rate_apr IS NULL OR interest_rate_apr BETWEEN 0 AND 100",
            name=op.f("ck_loans_interest_rate_apr_range"),
        ),
        sa.CheckConstraint(
            "length(btrim(borrower_id)) > 0", name=op.f("ck_loans_borrower_id_present")
        ),
        sa.CheckConstraint("updated_at >= created_at", name=op.f("ck_loans_updated_after_created")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loans")),
    )
    op.create_index(
        "ix_loans_created_at_id",
        "loans",
        [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_loans_created_at_id", table_name="loans")
    op.drop_table("loans")
