"""Repayments, the outstanding principal of each loan, and arrears kept by triggers.

`repayments` records each payment and its allocation to the schedule. `loans` gains the
outstanding principal and the due date of its oldest unpaid instalment, which the service
writes as it records payments and disburses. `loan_arrears` sums, per currency and oldest
unpaid due date, the disbursed loans and their outstanding principal; statement-level triggers
on `loans` keep it exact (as 0006 does for `loan_totals`), so the portfolio at risk as of any
day reads one row per currency and day, never the loans. A loan without a schedule counts
under the date `infinity`: outstanding, never at risk.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Only disbursed loans are at risk; a loan disbursed before this revision (or loaded without
# the columns) owes its whole amount from its first due date on.
_ARREARS_OF = """
    SELECT currency,
           coalesce(oldest_unpaid_due, CASE
               WHEN term_months IS NOT NULL AND interest_rate_apr IS NOT NULL
               THEN ((disbursed_at AT TIME ZONE 'UTC')::date + interval '1 month')::date
               ELSE 'infinity'::date END) AS due,
           {sign} AS loans,
           {sign} * coalesce(outstanding_principal, amount) AS outstanding
    FROM {rows} WHERE status = 'disbursed'
"""
_UPSERT = """
    INSERT INTO loan_arrears AS total (currency, oldest_unpaid_due, loans, outstanding_principal)
    SELECT currency, due, sum(loans), sum(outstanding)
    FROM ({changes}) AS changes
    GROUP BY currency, due
    HAVING sum(loans) <> 0 OR sum(outstanding) <> 0
    ORDER BY currency, due
    ON CONFLICT (currency, oldest_unpaid_due) DO UPDATE
    SET loans = total.loans + excluded.loans,
        outstanding_principal = total.outstanding_principal + excluded.outstanding_principal;
"""
_NEW = _ARREARS_OF.format(sign=1, rows="new_rows")
_OLD = _ARREARS_OF.format(sign=-1, rows="old_rows")
FUNCTIONS = {
    "loan_arrears_after_insert": _UPSERT.format(changes=_NEW),
    "loan_arrears_after_update": _UPSERT.format(changes=f"{_NEW} UNION ALL {_OLD}"),
    "loan_arrears_after_delete": _UPSERT.format(changes=_OLD),
    "loan_arrears_after_truncate": "DELETE FROM loan_arrears;",
}
TRIGGERS = {
    "loan_arrears_after_insert": "AFTER INSERT ON loans REFERENCING NEW TABLE AS new_rows",
    "loan_arrears_after_update": (
        "AFTER UPDATE ON loans REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "loan_arrears_after_delete": "AFTER DELETE ON loans REFERENCING OLD TABLE AS old_rows",
    "loan_arrears_after_truncate": "AFTER TRUNCATE ON loans",
}


def upgrade() -> None:
    op.add_column("loans", sa.Column("outstanding_principal", sa.Numeric(), nullable=True))
    op.add_column("loans", sa.Column("oldest_unpaid_due", sa.Date(), nullable=True))
    op.add_column("loan_events", sa.Column("amount", sa.Numeric(), nullable=True))
    op.create_table(
        "repayments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("loan_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("interest", sa.Numeric(), nullable=False),
        sa.Column("principal", sa.Numeric(), nullable=False),
        sa.Column("allocation", postgresql.JSONB(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "amount > 0 AND amount = interest + principal",
            name=op.f("ck_repayments_amount_allocated"),
        ),
        sa.CheckConstraint(
            "interest >= 0 AND principal >= 0", name=op.f("ck_repayments_parts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"],
            ["loans.id"],
            name=op.f("fk_repayments_loan_id_loans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repayments")),
    )
    op.create_index(op.f("ix_repayments_loan_id"), "repayments", ["loan_id"])
    op.create_table(
        "loan_arrears",
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("oldest_unpaid_due", sa.Date(), nullable=False),
        sa.Column("loans", sa.BigInteger(), nullable=False),
        sa.Column("outstanding_principal", sa.Numeric(), nullable=False),
        sa.PrimaryKeyConstraint("currency", "oldest_unpaid_due", name=op.f("pk_loan_arrears")),
    )
    # No loan may change between the backfill and the triggers taking over.
    op.execute("LOCK TABLE loans IN SHARE ROW EXCLUSIVE MODE")
    op.execute(_UPSERT.format(changes=_ARREARS_OF.format(sign=1, rows="loans")))
    for name, body in FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{body}\n    RETURN NULL;\nEND\n$$"
        )
    for name, timing in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {timing} FOR EACH STATEMENT EXECUTE FUNCTION {name}()")


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON loans")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("loan_arrears")
    op.drop_index(op.f("ix_repayments_loan_id"), table_name="repayments")
    op.drop_table("repayments")
    op.drop_column("loan_events", "amount")
    op.drop_column("loans", "oldest_unpaid_due")
    op.drop_column("loans", "outstanding_principal")
