"""Settings: production refuses to start with an empty, default or example password."""

import pytest
from pydantic import ValidationError

from branchloans.config import DEVELOPMENT_CURSOR_KEY, AppEnv, Settings
from tests.support import make_settings

SERVER = "db.internal:5432/microloans"


def production_settings(database_url: str) -> Settings:
    return make_settings(database_url, app_env="production")


@pytest.mark.parametrize(
    "database_url",
    [
        f"postgresql+asyncpg://prod_user@{SERVER}",
        f"postgresql+asyncpg://prod_user:@{SERVER}",
        f"postgresql+asyncpg://prod_user:%20%20@{SERVER}",
    ],
    ids=["no password", "empty password", "blank password"],
)
def test_production_refuses_a_missing_password(database_url: str) -> None:
    with pytest.raises(ValidationError, match="needs a database password"):
        production_settings(database_url)


@pytest.mark.parametrize(
    "password", ["postgres", "password", "changeme", "example", "supersecurepass", "STAGING_PASS"]
)
def test_production_refuses_a_default_password(password: str) -> None:
    with pytest.raises(ValidationError, match="default or example database password"):
        production_settings(f"postgresql+asyncpg://prod_user:{password}@{SERVER}")


def test_production_refuses_the_default_database_url() -> None:
    with pytest.raises(ValidationError, match="needs a database password"):
        Settings(_env_file=None, app_env="production")  # type: ignore[call-arg]


def test_production_accepts_a_generated_password() -> None:
    settings = production_settings(f"postgresql+asyncpg://prod_user:k3Jq9vXz2Lw8@{SERVER}")

    assert settings.app_env is AppEnv.PRODUCTION


def test_production_reads_a_percent_encoded_password() -> None:
    # "postgres" spelled with percent escapes is still the default password.
    with pytest.raises(ValidationError, match="default or example"):
        production_settings(f"postgresql+asyncpg://prod_user:%70ostgres@{SERVER}")


@pytest.mark.parametrize("app_env", ["development", "staging"])
def test_other_environments_accept_the_default_password(app_env: str) -> None:
    settings = make_settings(f"postgresql+asyncpg://postgres:postgres@{SERVER}", app_env=app_env)

    assert settings.app_env == app_env


def test_production_refusal_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg://prod_user:postgres@{SERVER}")

    with pytest.raises(ValidationError, match="default or example"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_production_refuses_a_default_password_for_migrations() -> None:
    with pytest.raises(ValidationError, match="MIGRATION_DATABASE_URL"):
        make_settings(
            f"postgresql+asyncpg://prod_user:k3Jq9vXz2Lw8@{SERVER}",
            app_env="production",
            migration_database_url=f"postgresql+asyncpg://postgres:postgres@{SERVER}",
        )


GENERATED_URL = f"postgresql+asyncpg://prod_user:k3Jq9vXz2Lw8@{SERVER}"


@pytest.mark.parametrize(
    "keys",
    [DEVELOPMENT_CURSOR_KEY, "x" * 31, f"{'n' * 40},{DEVELOPMENT_CURSOR_KEY}"],
    ids=["default", "short", "default-among-others"],
)
def test_production_refuses_a_default_or_short_cursor_key(keys: str) -> None:
    with pytest.raises(ValidationError, match="cursor signing key") as refused:
        make_settings(GENERATED_URL, app_env="production", cursor_signing_keys=keys)

    assert "n" * 40 not in str(refused.value)


def test_production_refuses_the_cursor_key_it_defaults_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", GENERATED_URL)

    with pytest.raises(ValidationError, match="CURSOR_SIGNING_KEYS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("keys", ["", " , "])
def test_cursor_keys_cannot_be_empty(keys: str) -> None:
    with pytest.raises(ValidationError, match="at least one key"):
        make_settings(GENERATED_URL, cursor_signing_keys=keys)


def test_cursor_keys_are_a_comma_separated_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", GENERATED_URL)
    monkeypatch.setenv("CURSOR_SIGNING_KEYS", f"{'n' * 32}, {'o' * 32}")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert [key.get_secret_value() for key in settings.cursor_signing_keys] == ["n" * 32, "o" * 32]
    assert "n" * 32 not in repr(settings)


def test_other_environments_sign_cursors_with_the_development_key() -> None:
    settings = Settings(_env_file=None, app_env="staging")  # type: ignore[call-arg]

    assert [key.get_secret_value() for key in settings.cursor_signing_keys] == [
        DEVELOPMENT_CURSOR_KEY
    ]
