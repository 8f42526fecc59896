"""Loan lifecycle: a version and disbursement time on loans, and the loan_events history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "approved", "rejected", "disbursed", "repaid", "defaulted")
STATUS_LIST = ", ".join(f"'{status}'" for status in STATUSES)


def _status_type() -> sa.Enum:
    return sa.Enum(*STATUSES, name="loanstatus", native_enum=False, length=16)


def upgrade() -> None:
    op.add_column("loans", sa.Column("disbursed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("loans", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    # Loans already paid out before this revision get their last change as disbursement time.
    op.execute(
        "UPDATE loans SET disbursed_at = updated_at"
        " WHERE status IN ('disbursed', 'repaid', 'defaulted')"
    )
    op.create_check_constraint("version_positive", "loans", "version >= 1")
    op.create_check_constraint(
        "disbursed_at_iff_paid_out",
        "loans",
        "(disbursed_at IS NOT NULL) = (status IN ('disbursed', 'repaid', 'defaulted'))",
    )
    op.create_index(
        "ix_loans_borrower_id_created_at_id",
        "loans",
        ["borrower_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )
    op.create_table(
        "loan_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("loan_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", _status_type(), nullable=True),
        sa.Column("to_status", _status_type(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            f"to_status IN ({STATUS_LIST})", name=op.f("ck_loan_events_to_status_known")
        ),
        sa.CheckConstraint(
            f"from_status IS NULL OR from_status IN ({STATUS_LIST})",
            name=op.f("ck_loan_events_from_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"],
            ["loans.id"],
            name=op.f("fk_loan_events_loan_id_loans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_events")),
    )
    op.create_index(op.f("ix_loan_events_loan_id"), "loan_events", ["loan_id"])
    # Loans created before this revision get the event that records their current status.
    op.execute(
        "INSERT INTO loan_events (loan_id, to_status, reason, occurred_at)"
        " SELECT id, status, 'recorded when the history began', updated_at FROM loans"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_loan_events_loan_id"), table_name="loan_events")
    op.drop_table("loan_events")
    op.drop_index("ix_loans_borrower_id_created_at_id", table_name="loans")
    op.drop_constraint(op.f("ck_loans_disbursed_at_iff_paid_out"), "loans", type_="check")
    op.drop_constraint(op.f("ck_loans_version_positive"), "loans", type_="check")
    op.drop_column("loans", "version")
    op.drop_column("loans", "disbursed_at")
