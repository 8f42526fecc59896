"""Loan totals kept by triggers, and indexes for filtered keyset paging.

`loan_totals` holds, per (status, currency, slot), how many loans there are and the sum
of their amounts. Statement-level triggers on `loans` keep it exact in the same
transaction as every INSERT (COPY included), UPDATE, DELETE and TRUNCATE, whoever runs
it, so statistics read a few dozen rows instead of scanning every loan.

Statement-level triggers with transition tables cost one aggregate per statement, not
one upsert per row: a COPY of a million loans touches each total once. The slot is the
writing backend's pid modulo 16, so concurrent transactions in the same currency
mostly update different rows instead of queueing behind one row lock until commit.
Rows are upserted in key order, so two multi-key statements lock in the same order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "approved", "rejected", "disbursed", "repaid", "defaulted")
# Each function adds the (status, currency) counts and sums of the statement's rows to the
# slot of this connection (pg_backend_pid() % 16); keys whose change nets to zero (an UPDATE
# of other columns) are left untouched.
FUNCTIONS = {
    "loan_totals_after_insert": """
        INSERT INTO loan_totals AS total (status, currency, slot, loans, amount)
        SELECT status, currency, pg_backend_pid() % 16, count(*), sum(amount)
        FROM new_rows
        GROUP BY status, currency
        ORDER BY status, currency
        ON CONFLICT (status, currency, slot) DO UPDATE
        SET loans = total.loans + excluded.loans, amount = total.amount + excluded.amount;
    """,
    "loan_totals_after_update": """
        INSERT INTO loan_totals AS total (status, currency, slot, loans, amount)
        SELECT status, currency, pg_backend_pid() % 16, sum(loans), sum(amount)
        FROM (
            SELECT status, currency, 1 AS loans, amount FROM new_rows
            UNION ALL
            SELECT status, currency, -1, -amount FROM old_rows
        ) AS changes
        GROUP BY status, currency
        HAVING sum(loans) <> 0 OR sum(amount) <> 0
        ORDER BY status, currency
        ON CONFLICT (status, currency, slot) DO UPDATE
        SET loans = total.loans + excluded.loans, amount = total.amount + excluded.amount;
    """,
    "loan_totals_after_delete": """
        INSERT INTO loan_totals AS total (status, currency, slot, loans, amount)
        SELECT status, currency, pg_backend_pid() % 16, -count(*), -sum(amount)
        FROM old_rows
        GROUP BY status, currency
        ORDER BY status, currency
        ON CONFLICT (status, currency, slot) DO UPDATE
        SET loans = total.loans + excluded.loans, amount = total.amount + excluded.amount;
    """,
    "loan_totals_after_truncate": "DELETE FROM loan_totals;",
}

TRIGGERS = {
    "loan_totals_after_insert": "AFTER INSERT ON loans REFERENCING NEW TABLE AS new_rows",
    "loan_totals_after_update": (
        "AFTER UPDATE ON loans REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "loan_totals_after_delete": "AFTER DELETE ON loans REFERENCING OLD TABLE AS old_rows",
    "loan_totals_after_truncate": "AFTER TRUNCATE ON loans",
}


def _keyset_index(column: str) -> None:
    op.create_index(
        f"ix_loans_{column}_created_at_id",
        "loans",
        [column, sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )


def upgrade() -> None:
    _keyset_index("status")
    _keyset_index("currency")
    op.create_table(
        "loan_totals",
        sa.Column(
            "status",
            sa.Enum(*STATUSES, name="loanstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("loans", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.PrimaryKeyConstraint("status", "currency", "slot", name=op.f("pk_loan_totals")),
    )
    # No loan may change between the backfill and the triggers taking over.
    op.execute("LOCK TABLE loans IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO loan_totals (status, currency, slot, loans, amount)"
        " SELECT status, currency, 0, count(*), sum(amount) FROM loans GROUP BY status, currency"
    )
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
    op.drop_table("loan_totals")
    op.drop_index("ix_loans_currency_created_at_id", table_name="loans")
    op.drop_index("ix_loans_status_created_at_id", table_name="loans")
