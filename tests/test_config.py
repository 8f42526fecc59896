"""Settings: production refuses to start with an empty, default, example or short password,
wildcard CORS origins, proxies trusted too widely, or a long key cache."""

import pytest
from pydantic import ValidationError

from branchloans.config import DEVELOPMENT_CURSOR_KEY, AppEnv, Settings
from tests.support import make_settings

SERVER = "db.internal:5432/microloans"


GENERATED = f"postgresql+asyncpg://prod_user:k3Jq9vXz2Lw8pR4t@{SERVER}"


def production_settings(database_url: str = GENERATED, **overrides: object) -> Settings:
    return make_settings(database_url, app_env="production", **overrides)


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
    settings = production_settings(f"postgresql+asyncpg://prod_user:k3Jq9vXz2Lw8pR4t@{SERVER}")

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
            f"postgresql+asyncpg://prod_user:k3Jq9vXz2Lw8pR4t@{SERVER}",
            app_env="production",
            migration_database_url=f"postgresql+asyncpg://postgres:postgres@{SERVER}",
        )


@pytest.mark.parametrize("name", ["DATABASE_URL", "MIGRATION_DATABASE_URL"])
def test_production_refuses_a_short_password(name: str) -> None:
    short = f"postgresql+asyncpg://prod_user:k3Jq9vXz2Lw8pR4@{SERVER}"  # 15 characters
    urls = {"DATABASE_URL": GENERATED, "MIGRATION_DATABASE_URL": GENERATED} | {name: short}

    with pytest.raises(ValidationError, match=f"shorter than 16 characters in {name}"):
        production_settings(urls["DATABASE_URL"], migration_database_url=urls[name])


@pytest.mark.parametrize("origins", ["*", "https://branchloans.com,*"])
def test_production_refuses_wildcard_cors_origins(origins: str) -> None:
    with pytest.raises(ValidationError, match="wildcard in CORS_ALLOWED_ORIGINS"):
        production_settings(cors_allowed_origins=origins)


@pytest.mark.parametrize("proxies", ["0.0.0.0/0", "::/0", "10.0.0.7,0.0.0.0/1", "8.0.0.0/8"])
def test_production_refuses_trusting_proxies_too_widely(proxies: str) -> None:
    with pytest.raises(ValidationError, match="refuses TRUSTED_PROXIES"):
        production_settings(trusted_proxies=proxies)


@pytest.mark.parametrize(
    "proxies", ["172.30.0.10/32", "10.0.0.0/8", "fd00::/8", "203.0.113.0/24", "2001:db8::/64"]
)
def test_production_trusts_private_networks_and_public_subnets(proxies: str) -> None:
    settings = production_settings(trusted_proxies=proxies)

    assert [str(network) for network in settings.trusted_proxies] == proxies.split(",")


def test_production_refuses_a_key_cache_over_five_minutes() -> None:
    with pytest.raises(ValidationError, match="API_KEY_CACHE_SECONDS above 300"):
        production_settings(api_key_cache_seconds=301)


def test_production_accepts_a_five_minute_key_cache() -> None:
    assert production_settings(api_key_cache_seconds=300).api_key_cache_seconds == 300


def test_other_environments_accept_what_production_refuses() -> None:
    settings = make_settings(
        "postgresql+asyncpg://dev:short@db/microloans",
        app_env="staging",
        cors_allowed_origins="*",
        trusted_proxies="0.0.0.0/0",
        api_key_cache_seconds=86400,
    )

    assert settings.api_key_cache_seconds == 86400


@pytest.mark.parametrize(
    "keys",
    [DEVELOPMENT_CURSOR_KEY, "x" * 31, f"{'n' * 40},{DEVELOPMENT_CURSOR_KEY}"],
    ids=["default", "short", "default-among-others"],
)
def test_production_refuses_a_default_or_short_cursor_key(keys: str) -> None:
    with pytest.raises(ValidationError, match="cursor signing key") as refused:
        make_settings(GENERATED, app_env="production", cursor_signing_keys=keys)

    assert "n" * 40 not in str(refused.value)


def test_production_refuses_the_cursor_key_it_defaults_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", GENERATED)

    with pytest.raises(ValidationError, match="CURSOR_SIGNING_KEYS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("keys", ["", " , "])
def test_cursor_keys_cannot_be_empty(keys: str) -> None:
    with pytest.raises(ValidationError, match="at least one key"):
        make_settings(GENERATED, cursor_signing_keys=keys)


def test_cursor_keys_are_a_comma_separated_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", GENERATED)
    monkeypatch.setenv("CURSOR_SIGNING_KEYS", f"{'n' * 32}, {'o' * 32}")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert [key.get_secret_value() for key in settings.cursor_signing_keys] == ["n" * 32, "o" * 32]
    assert "n" * 32 not in repr(settings)


def test_other_environments_sign_cursors_with_the_development_key() -> None:
    settings = Settings(_env_file=None, app_env="staging")  # type: ignore[call-arg]

    assert [key.get_secret_value() for key in settings.cursor_signing_keys] == [
        DEVELOPMENT_CURSOR_KEY
    ]
