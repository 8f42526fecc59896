"""The API's database role reads and writes its rows, but cannot change the schema, mint or
revive a key, nor rewrite a loan's history; not even the owner rewrites that history."""

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from alembic import command
from sqlalchemy import make_url

from branchloans.app import create_app
from branchloans.auth.metrics import KeyLimitMetrics
from branchloans.auth.quotas import KeyQuotas
from branchloans.auth.sharing import SharedLimits
from branchloans.cli import main
from branchloans.config import get_settings
from branchloans.db import Database
from branchloans.migrate import (
    alembic_config,
    asyncpg_dsn,
    drop_database,
)
from branchloans.observability.metrics import Metrics
from tests.support import SERVER_URL, make_settings, throwaway_database_url

# Long enough for production; the test server trusts any password.
APP_PASSWORD = "app-secret-k3Jq9vXz2Lw8"


def _as_role(url: str, role: str) -> str:
    return (
        make_url(url)
        .set(username=role, password=APP_PASSWORD)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def app_role_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A database migrated by the owner, with DATABASE_URL naming a separate API role."""
    owner_url = throwaway_database_url("roles")
    role = f"bl_app_{uuid.uuid4().hex[:8]}"
    app_url = make_url(owner_url).set(username=role, password=APP_PASSWORD)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", owner_url)
    monkeypatch.setenv("DATABASE_URL", app_url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    assert main(["migrate"]) == 0
    yield owner_url, role
    get_settings.cache_clear()
    asyncio.run(drop_database(owner_url))
    asyncio.run(_drop_role(role))


async def _drop_role(role: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(SERVER_URL))
    try:
        await connection.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await connection.close()


async def _as_app_role(owner_url: str, role: str, statement: str) -> object:
    connection = await asyncpg.connect(asyncpg_dsn(_as_role(owner_url, role)))
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


def test_api_role_reads_and_writes_loans(app_role_database: tuple[str, str]) -> None:
    owner_url, role = app_role_database
    insert = (
        "INSERT INTO loans (id, borrower_id, amount, currency) "
        "VALUES (gen_random_uuid(), 'b', 10, 'USD') RETURNING 1"
    )

    assert asyncio.run(_as_app_role(owner_url, role, insert)) == 1
    assert asyncio.run(_as_app_role(owner_url, role, "SELECT count(*) FROM loans")) == 1


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE loans",
        "CREATE TABLE intruder (id int)",
        "ALTER TABLE loans ADD COLUMN note text",
        "UPDATE alembic_version SET version_num = 'x'",
        "TRUNCATE loans",
    ],
)
def test_api_role_cannot_change_the_schema_or_its_history(
    app_role_database: tuple[str, str], statement: str
) -> None:
    owner_url, role = app_role_database

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(_as_app_role(owner_url, role, statement))


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO api_keys (id, name, key_hash, scopes) VALUES ('0123456789ab', 'forged',"
        " repeat('a', 64), '{loans:read,loans:write,loans:manage}')",
        "UPDATE api_keys SET revoked_at = NULL",
        "DELETE FROM api_keys",
        "UPDATE loan_events SET reason = 'rewritten'",
        "DELETE FROM loan_events",
        "TRUNCATE loan_events",
        "DELETE FROM loans",
        "UPDATE repayments SET amount = 0",
    ],
)
def test_api_role_can_neither_forge_keys_nor_rewrite_history(
    app_role_database: tuple[str, str], statement: str
) -> None:
    owner_url, role = app_role_database

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        asyncio.run(_as_app_role(owner_url, role, statement))


_LOAN_WITH_EVENT = """
WITH loan AS (
    INSERT INTO loans (id, borrower_id, amount, currency)
    VALUES (gen_random_uuid(), 'b', 10, 'USD') RETURNING id
)
INSERT INTO loan_events (loan_id, to_status) SELECT id, 'pending' FROM loan RETURNING loan_id
"""


async def _as_owner(owner_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(owner_url))
    try:
        loan_id = await connection.fetchval(_LOAN_WITH_EVENT)
        for statement in statements:
            await connection.execute(statement.format(loan_id=loan_id))
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE loan_events SET reason = 'rewritten'",
        "DELETE FROM loan_events",
        "TRUNCATE loan_events",
        "DELETE FROM loans WHERE id = '{loan_id}'",
        "TRUNCATE loans CASCADE",
    ],
)
def test_loan_history_is_append_only_even_for_the_owner(
    migrated_database_url: str, statement: str
) -> None:
    with pytest.raises(asyncpg.RaiseError, match="loan_events is append-only"):
        asyncio.run(_as_owner(migrated_database_url, statement))


def test_a_migration_rewrites_history_only_with_the_triggers_set_aside(
    migrated_database_url: str,
) -> None:
    rewrite = (
        "BEGIN; ALTER TABLE loan_events DISABLE TRIGGER USER;"
        " UPDATE loan_events SET reason = 'migrated' WHERE loan_id = '{loan_id}';"
        " ALTER TABLE loan_events ENABLE TRIGGER USER; COMMIT"
    )

    asyncio.run(_as_owner(migrated_database_url, rewrite))

    with pytest.raises(asyncpg.RaiseError):
        asyncio.run(_as_owner(migrated_database_url, "DELETE FROM loan_events"))


async def _create_approve_and_revoke(app_url: str, key: str, name: str) -> list[int]:
    # Production too: it refuses to start as a superuser, and the API's role is none.
    settings = make_settings(
        app_url, app_env="production", api_key_cache_seconds=0, migration_database_url=None
    )
    app = create_app(settings)
    statuses = []
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        http.headers["Authorization"] = f"Bearer {key}"
        body = {"borrower_id": "b", "amount": "10.00", "currency": "USD"}
        created = await http.post("/api/loans", json=body)
        approved = await http.post(f"/api/loans/{created.json()['id']}/approve")
        events = await http.get(f"/api/loans/{created.json()['id']}/events")
        statuses += [created.status_code, approved.status_code, len(events.json())]
        await asyncio.to_thread(main, ["api-keys", "revoke", name])
        statuses.append((await http.get("/api/loans")).status_code)
    return statuses


def test_api_works_in_production_as_its_role_with_keys_the_owner_manages(
    app_role_database: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    owner_url, role = app_role_database
    name = f"roles-{uuid.uuid4().hex[:8]}"
    assert (
        main(
            [
                "api-keys",
                "create",
                "--name",
                name,
                "--scopes",
                "loans:write,loans:manage,loans:read",
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.strip()

    statuses = asyncio.run(_create_approve_and_revoke(_as_role(owner_url, role), key, name))

    assert statuses == [201, 200, 2, 401]


def test_key_management_as_the_api_role_is_refused_with_advice(
    app_role_database: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("MIGRATION_DATABASE_URL")
    get_settings.cache_clear()

    assert main(["api-keys", "create", "--name", "forged", "--scopes", "loans:read"]) == 2

    error = capsys.readouterr().err
    assert "permission denied for table api_keys" in error
    assert "MIGRATION_DATABASE_URL" in error


def test_upgrading_takes_writes_on_keys_and_history_from_an_existing_api_role(
    empty_database_url: str,
) -> None:
    role = f"bl_app_{uuid.uuid4().hex[:8]}"
    command.upgrade(alembic_config(empty_database_url), "0008")
    asyncio.run(_grant_everything(empty_database_url, role))
    try:
        command.upgrade(alembic_config(empty_database_url), "0009")

        privileges = asyncio.run(_privileges(empty_database_url, role))
    finally:
        asyncio.run(_forget_role(empty_database_url, role))

    assert privileges == {"api_keys": ["SELECT"], "loan_events": ["INSERT", "SELECT"]}


async def _grant_everything(database_url: str, role: str) -> None:
    """The API's role as `branchloans migrate` made it before revision 0009."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(f'CREATE ROLE "{role}" LOGIN')
        await connection.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
        )
    finally:
        await connection.close()


async def _forget_role(database_url: str, role: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(f'DROP OWNED BY "{role}"')
        await connection.execute(f'DROP ROLE "{role}"')
    finally:
        await connection.close()


async def _privileges(database_url: str, role: str) -> dict[str, list[str]]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT table_name, array_agg(privilege_type::text ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants"
            " WHERE grantee = $1 AND table_name IN ('api_keys', 'loan_events')"
            " GROUP BY table_name",
            role,
        )
    finally:
        await connection.close()
    return {row[0]: row[1] for row in rows}


def test_demo_loans_are_seeded_as_the_api_role(
    app_role_database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compose's migrate service seeds development with DATABASE_URL naming the API's role.
    monkeypatch.delenv("MIGRATION_DATABASE_URL")
    get_settings.cache_clear()
    owner_url, role = app_role_database

    assert main(["seed"]) == 0
    assert asyncio.run(_as_app_role(owner_url, role, "SELECT count(*) FROM loan_events")) == 5


async def _share_limits(database_url: str) -> int:
    settings = make_settings(database_url, key_rate_limit=10)
    database = await Database.open(settings)
    limits = SharedLimits(KeyQuotas(settings), database, KeyLimitMetrics(Metrics()))
    try:
        await limits.sync()
        await limits.quotas.admit("roles-key")
        await limits.sync()  # its admission reported, its claim made
        hits = await database.pool.fetchval("SELECT sum(hits) FROM key_limit_hits")
        await limits.leave()
        return int(hits)
    finally:
        await database.close()


def test_api_role_shares_the_per_key_limits(app_role_database: tuple[str, str]) -> None:
    owner_url, role = app_role_database

    assert asyncio.run(_share_limits(_as_role(owner_url, role))) == 1
