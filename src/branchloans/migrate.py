"""Creating the database and bringing its schema to the newest Alembic revision."""

from pathlib import Path

import asyncpg
import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import make_url

logger = structlog.get_logger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
MAINTENANCE_DATABASE = "postgres"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic configuration for the project's migrations, aimed at `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def head_revision() -> str | None:
    """The newest revision among the migrations shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> frozenset[str]:
    """Every revision shipped with this code; a database at any other one is ahead of it."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def asyncpg_dsn(database_url: str, database: str | None = None) -> str:
    """DATABASE_URL (`postgresql+asyncpg://`) as a DSN asyncpg.connect takes, optionally
    aimed at another database."""
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


async def create_database_if_missing(database_url: str) -> bool:
    """Create the database DATABASE_URL names unless it exists; True when it was created."""
    name = make_url(database_url).database
    assert name, "DATABASE_URL names no database"
    connection = await asyncpg.connect(asyncpg_dsn(database_url, MAINTENANCE_DATABASE))
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await connection.execute(f"CREATE DATABASE {_quote_identifier(name)}")
        return True
    finally:
        await connection.close()


async def drop_database(database_url: str) -> None:
    """Drop the database DATABASE_URL names, closing its sessions first."""
    name = make_url(database_url).database
    assert name, "DATABASE_URL names no database"
    connection = await asyncpg.connect(asyncpg_dsn(database_url, MAINTENANCE_DATABASE))
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")
    finally:
        await connection.close()


def upgrade_to_head(database_url: str) -> None:
    """Apply every migration not yet applied. Runs its own event loop: call it outside one."""
    command.upgrade(alembic_config(database_url), "head")


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Granted nothing else by `grant_app_role`, because the service never does it: rewrite the
# migration history, mint, change or revoke a key (the owner's CLI does), rewrite a loan's
# history or payments, or delete a loan (its events and payments would go with it).
APP_ROLE_REFUSED = {
    "alembic_version": "INSERT, UPDATE, DELETE",
    "api_keys": "INSERT, UPDATE, DELETE",
    "loan_events": "UPDATE, DELETE",
    "repayments": "UPDATE, DELETE",
    "loans": "DELETE",
}


async def grant_app_role(owner_url: str, app_url: str) -> bool:
    """Give the API's role (DATABASE_URL's user) the rows it works with, and nothing more.

    Run as the owner after migrating. Creates the role when missing, keeps its password in
    step with DATABASE_URL, and grants row privileges only, less `APP_ROLE_REFUSED`: the
    API's role can neither change the schema, the migration history, the keys nor the loans'
    histories. It may read the statistics views too (pg_read_all_stats): on a read replica,
    pg_stat_wal_receiver tells one cut off from its primary from one that is caught up. False
    when both URLs name the same user.
    """
    owner, app = make_url(owner_url), make_url(app_url)
    if not app.username or app.username == owner.username:
        return False
    role = _quote_identifier(app.username)
    password = f"PASSWORD {_quote_literal(app.password)}" if app.password else ""
    connection = await asyncpg.connect(asyncpg_dsn(owner_url, app.database))
    try:
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_roles WHERE rolname = $1", app.username
        )
        verb = "ALTER" if exists else "CREATE"
        async with connection.transaction():
            await connection.execute(f"{verb} ROLE {role} LOGIN {password}")
            for statement in (
                f"GRANT CONNECT ON DATABASE {_quote_identifier(str(app.database))} TO {role}",
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                f"GRANT USAGE ON SCHEMA public TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
                *(
                    f"REVOKE {privileges} ON {table} FROM {role}"
                    for table, privileges in APP_ROLE_REFUSED.items()
                ),
            ):
                await connection.execute(statement)
            await _grant_statistics(connection, role)
    finally:
        await connection.close()
    return True


async def _grant_statistics(connection: asyncpg.Connection, role: str) -> None:
    # An owner that is not a superuser may not hand out predefined roles (managed servers,
    # Postgres 16 and later): the other grants stand, and the API, unable to see its replica's
    # WAL receiver, reports the replica unreachable and says what to grant.
    try:
        async with connection.transaction():  # a savepoint
            await connection.execute(f"GRANT pg_read_all_stats TO {role}")
    except asyncpg.InsufficientPrivilegeError as error:
        logger.warning(
            "the API's role may not read the statistics views; a superuser should run"
            f" GRANT pg_read_all_stats TO {role}",
            error=str(error),
        )
