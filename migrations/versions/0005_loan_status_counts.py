"""Keep loans per status in loan_status_counts, maintained by triggers.

/metrics reports loans by status on every scrape; counting them from `loans` would scan
the table each time. Statement-level triggers keep the counts instead, exact whoever writes
(the API, `branchloans seed`, psql). Each status has up to 16 rows, one per shard picked by
the writing backend, so concurrent inserts do not serialize on a single row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each branch adds one row per status (so ON CONFLICT never meets a key twice) to the shard
# of the writing backend: pg_backend_pid() % 16.
TRACK_FUNCTION = """
CREATE FUNCTION loans_track_status_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM loan_status_counts;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO loan_status_counts AS counts (status, shard, loans)
        SELECT status, pg_backend_pid() % 16, count(*) FROM new_loans GROUP BY status
        ON CONFLICT (status, shard) DO UPDATE SET loans = counts.loans + excluded.loans;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO loan_status_counts AS counts (status, shard, loans)
        SELECT status, pg_backend_pid() % 16, -count(*) FROM old_loans GROUP BY status
        ON CONFLICT (status, shard) DO UPDATE SET loans = counts.loans + excluded.loans;
    ELSE
        INSERT INTO loan_status_counts AS counts (status, shard, loans)
        SELECT status, pg_backend_pid() % 16, sum(change)
        FROM (
            SELECT status, -1 AS change FROM old_loans
            UNION ALL
            SELECT status, 1 AS change FROM new_loans
        ) AS changed
        GROUP BY status HAVING sum(change) <> 0
        ON CONFLICT (status, shard) DO UPDATE SET loans = counts.loans + excluded.loans;
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = {
    "loans_count_inserted": "AFTER INSERT ON loans REFERENCING NEW TABLE AS new_loans",
    "loans_count_deleted": "AFTER DELETE ON loans REFERENCING OLD TABLE AS old_loans",
    "loans_count_updated": (
        "AFTER UPDATE ON loans REFERENCING OLD TABLE AS old_loans NEW TABLE AS new_loans"
    ),
    "loans_count_truncated": "AFTER TRUNCATE ON loans",
}


def upgrade() -> None:
    op.create_table(
        "loan_status_counts",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("loans", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("status", "shard", name=op.f("pk_loan_status_counts")),
    )
    # No write may slip between the triggers' creation and the initial count.
    op.execute("LOCK TABLE loans IN SHARE ROW EXCLUSIVE MODE")
    op.execute(TRACK_FUNCTION)
    for name, timing in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {timing} FOR EACH STATEMENT"
            " EXECUTE FUNCTION loans_track_status_counts()"
        )
    op.execute(
        "INSERT INTO loan_status_counts (status, shard, loans)"
        " SELECT status, 0, count(*) FROM loans GROUP BY status"
    )


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON loans")
    op.execute("DROP FUNCTION loans_track_status_counts()")
    op.drop_table("loan_status_counts")
