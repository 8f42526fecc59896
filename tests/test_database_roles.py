"""The API's database role reads and writes rows but cannot change the schema."""

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import make_url

from branchloans.cli import main
from branchloans.config import get_settings
from branchloans.migrate import asyncpg_dsn, drop_database
from tests.support import SERVER_URL, throwaway_database_url


def _as_role(url: str, role: str) -> str:
    return (
        make_url(url)
        .set(username=role, password="app-secret")
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def app_role_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A database migrated by the owner, with DATABASE_URL naming a separate API role."""
    owner_url = throwaway_database_url("roles")
    role = f"bl_app_{uuid.uuid4().hex[:8]}"
    app_url = make_url(owner_url).set(username=role, password="app-secret")
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
