"""Amounts in each currency's own ISO 4217 minor unit: 3 decimals for KWD, none for JPY.

`loans.amount` was NUMERIC(12, 2), which refused the third decimal of a Kuwaiti dinar.
It becomes an unconstrained NUMERIC, like every other money column (0006, 0008), and
`currency_minor_units(code)` says how many decimals each currency has: CHECK constraints on
`loans`, `loan_totals` and `loan_arrears` refuse an amount with a digit beyond its
currency's minor unit (by value: 1000.00 is a whole number of yen), whoever writes it.

Why NUMERIC rather than NUMERIC(15, 3): a change of scale makes Postgres rewrite the table
and rebuild its indexes under an ACCESS EXCLUSIVE lock, while dropping the typmod is a
catalog change only (no rewrite; the table keeps its relfilenode). Postgres would still
re-check `ck_loans_amount_range` while holding that lock, so it is dropped and added back
NOT VALID with the new constraints, and all of them are validated after the lock is
released (VALIDATE takes SHARE UPDATE EXCLUSIVE: reads and writes go on meanwhile).

Measured three times on a million synthetic loans (`branchloans demo-data --count 1000000`,
374 MB with indexes) on the shared 2-core development machine, Postgres 15: the ACCESS
EXCLUSIVE lock on `loans` was held 13 ms and 19 ms (from the ALTER to its COMMIT, in the
statement log) and 23 ms (`python -m bench.migration_lock`, polling pg_locks); a client
reading a loan in a loop meanwhile waited at most 30 to 91 ms. The table is not rewritten
(same relfilenode). The five validations then took 3.7 s to 6 s, during which a client
updating a loan in a loop never waited more than 118 ms. For comparison, ALTER ... TYPE
NUMERIC(15, 3) held the lock 12.1 s on the same table (a rewrite). The figures and how to
repeat them: docs/operations.md, "Revision 0010".

The downgrade refuses while any loan holds an amount with more than two decimals (NUMERIC(12,
2) would round it); otherwise it rewrites `loans` back to NUMERIC(12, 2) under the lock
(5.5 s at a million loans; 21 s while the machine was busier).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ISO 4217 as branchloans.currencies lists it on this revision; a code not listed has 2
# decimals, as every amount had before. tests/test_migrations.py compares the function with
# that table, so a change to the table needs a revision that replaces the function.
_NOT_TWO = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}
_CASES = "\n".join(
    "        WHEN code IN ({}) THEN {}".format(", ".join(f"'{c}'" for c in codes.split()), units)
    for units, codes in _NOT_TWO.items()
)
MINOR_UNITS_FUNCTION = f"""
CREATE FUNCTION currency_minor_units(code text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
{_CASES}
        ELSE 2
    END
"""


def _in_minor_units(column: str) -> str:
    return f"round({column}, currency_minor_units(currency)) = {column}"


# Table -> (constraint, condition): each is added NOT VALID, then validated without the lock.
CONSTRAINTS = {
    "loans": {
        "ck_loans_amount_range": "amount > 0 AND amount <= 50000",
        "ck_loans_amount_in_minor_units": _in_minor_units("amount"),
        "ck_loans_outstanding_in_minor_units": _in_minor_units("outstanding_principal"),
    },
    "loan_totals": {"ck_loan_totals_amount_in_minor_units": _in_minor_units("amount")},
    "loan_arrears": {
        "ck_loan_arrears_outstanding_in_minor_units": _in_minor_units("outstanding_principal"),
    },
}
# Waits this long at most for the lock, so that a long transaction on `loans` fails the
# upgrade rather than stalling every request queued behind it; run it again later.
LOCK_TIMEOUT = "10s"


def upgrade() -> None:
    op.execute(MINOR_UNITS_FUNCTION)
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    for table, constraints in CONSTRAINTS.items():
        changes = [
            f"ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID"
            for name, condition in constraints.items()
        ]
        if table == "loans":
            changes[:0] = ["DROP CONSTRAINT ck_loans_amount_range", "ALTER amount TYPE numeric"]
        op.execute(f"ALTER TABLE {table} {', '.join(changes)}")
    # Commits the changes above, releasing the locks, before scanning the rows.
    with op.get_context().autocommit_block():
        for table, constraints in CONSTRAINTS.items():
            for name in constraints:
                op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    finer = op.get_bind().scalar(
        text("SELECT count(*) FROM loans WHERE round(amount, 2) <> amount")
    )
    if finer:
        raise RuntimeError(
            f"{finer} loans have amounts with more than two decimals (KWD, BHD, ...), which "
            "NUMERIC(12, 2) would round: refusing to downgrade. Delete or convert "
            "those loans first if the downgrade is really wanted."
        )
    for table, constraints in CONSTRAINTS.items():
        names = [name for name in constraints if name != "ck_loans_amount_range"]
        op.execute(f"ALTER TABLE {table} " + ", ".join(f"DROP CONSTRAINT {n}" for n in names))
    op.execute("ALTER TABLE loans ALTER amount TYPE numeric(12, 2)")
    op.execute("DROP FUNCTION currency_minor_units(text)")
