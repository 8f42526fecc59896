"""`loan_events` becomes append-only, and only the owner writes `api_keys`.

Triggers refuse every UPDATE, DELETE and TRUNCATE of `loan_events`, the owner's included (a
loan with a history cannot be deleted either: the cascade would delete its events). Only the
table's owner can set them aside, so a later migration that must rewrite history does so in
its own transaction:

    ALTER TABLE loan_events DISABLE TRIGGER USER; ...; ALTER TABLE loan_events ENABLE TRIGGER USER

Roles other than the owner lose any write on `api_keys` and any UPDATE, DELETE or TRUNCATE
on `loan_events` they were granted (`branchloans migrate` grants the API's role exactly
what it needs afterwards): a stolen API password can neither mint a key, bring a revoked one
back, nor rewrite the audit trail. The downgrade removes the triggers; it grants nothing back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFUSE = """
CREATE FUNCTION loan_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'loan_events is append-only: % refused', TG_OP
        USING HINT = 'only a migration may rewrite history, with the table''s triggers disabled';
END
$$
"""
TRIGGERS = {
    "loan_events_append_only": "BEFORE UPDATE OR DELETE ON loan_events FOR EACH ROW",
    "loan_events_not_truncated": "BEFORE TRUNCATE ON loan_events FOR EACH STATEMENT",
}
# Every grantee but the owner, of either table; PUBLIC holds no write by default.
_REVOKE_WRITES = """
DO $$
DECLARE
    grantee regrole;
BEGIN
    FOR grantee IN
        SELECT DISTINCT privilege.grantee::regrole
        FROM pg_class AS tables, aclexplode(tables.relacl) AS privilege
        WHERE tables.oid IN ('api_keys'::regclass, 'loan_events'::regclass)
          AND privilege.grantee NOT IN (0, tables.relowner)
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON api_keys FROM %s', grantee);
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON loan_events FROM %s', grantee);
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(_REFUSE)
    for name, timing in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {timing} EXECUTE FUNCTION loan_events_append_only()")
    op.execute(_REVOKE_WRITES)


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON loan_events")
    op.execute("DROP FUNCTION loan_events_append_only()")
