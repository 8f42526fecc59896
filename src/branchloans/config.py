"""Settings read from the environment (and an optional `.env` file)."""

import ipaddress
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal, Self
from urllib.parse import unquote

from pydantic import Field, PostgresDsn, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import make_url

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/microloans"
# Signs paging cursors outside production, which refuses it (and any short key).
DEVELOPMENT_CURSOR_KEY = "development-only-cursor-signing-key"  # pragma: allowlist secret
MIN_CURSOR_KEY_LENGTH = 32

# Passwords found in examples and tutorials (the old stack's among them) and the throwaway ones
# committed in envs/dev.env and envs/staging.env: all refused in production.
KNOWN_DEFAULT_PASSWORDS = frozenset(
    {
        "admin",
        "branchloans_app",
        "changeme",
        "change-me",
        "example",
        "password",
        "postgres",
        "secret",
        "staging_app_pass",
        "staging_grafana",
        "staging_pass",
        "supersecurepass",
    }
)


class AppEnv(StrEnum):
    """Where the service runs; it decides defaults such as the log format."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "console"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Production's bounds. 16 characters of a generated password are ~95 bits (the docs generate
# 48); five minutes is the longest a revoked key may keep working.
MIN_PRODUCTION_PASSWORD_LENGTH = 16
MAX_PRODUCTION_KEY_CACHE_SECONDS = 300
# Proxies are our own machines: anywhere in private address space, or a public subnet.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, used by some clusters' pod networks
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
)
_WIDEST_PUBLIC_PREFIX = {4: 24, 6: 64}


def _too_wide_to_trust(network: IPNetwork) -> bool:
    private = any(
        network.version == known.version and network.subnet_of(known)  # type: ignore[arg-type]
        for known in _PRIVATE_NETWORKS
    )
    return not private and network.prefixlen < _WIDEST_PUBLIC_PREFIX[network.version]


class Settings(BaseSettings):
    """Every knob of the service, each one an environment variable of the same name."""

    # Errors never quote the input: it holds passwords and signing keys.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    app_env: AppEnv = AppEnv.DEVELOPMENT
    database_url: PostgresDsn = PostgresDsn(DEFAULT_DATABASE_URL)
    database_read_url: PostgresDsn | None = Field(
        default=None,
        description="a replica for reads that tolerate staleness; unset: every read on the primary",
    )
    replica_max_lag_seconds: float = Field(
        5.0, gt=0, description="replica lag above which its reads go to the primary"
    )
    replica_check_interval: float = Field(
        2.0, gt=0, description="seconds between measurements of the replica's lag"
    )
    log_level: LogLevel = "INFO"
    log_format: LogFormat | None = Field(
        None, description="json or console; unset: console in development"
    )
    trusted_proxies: Annotated[
        tuple[IPNetwork, ...],
        NoDecode,
        Field(description="peers whose X-Forwarded-For names the client; comma-separated"),
    ] = ()

    db_pool_size: int = Field(10, ge=1, le=100)
    db_max_overflow: int = Field(5, ge=0, le=100)
    db_pool_timeout: float = Field(5.0, gt=0, description="seconds to wait for a pooled connection")
    db_connect_timeout: float = Field(3.0, gt=0, description="seconds to open a connection")
    db_statement_timeout: float = Field(10.0, gt=0, description="seconds a query may run")
    db_transaction_pooler: bool = Field(
        False,
        description="the database URLs reach Postgres through a transaction-pooling PgBouncer:"
        " no prepared statements kept, no session settings sent",
    )
    health_timeout: float = Field(1.5, gt=0, description="seconds /health waits for Postgres")

    max_body_bytes: int = Field(1024 * 1024, ge=1024)

    # The edge of `branchloans serve`, for clients that reach uvicorn without nginx.
    http_max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="largest request line plus headers; more is a 431"
    )
    http_header_timeout: float = Field(
        10.0, gt=0, description="seconds a request's headers may take to arrive"
    )
    http_keep_alive_seconds: int = Field(
        5, ge=1, description="seconds an idle keep-alive connection stays open"
    )
    http_limit_concurrency: int = Field(
        1000, ge=1, description="connections plus requests per worker; beyond it a 503"
    )

    # Per API key, for the whole service: every worker of every instance shares them.
    key_rate_limit: int = Field(
        6000, ge=0, description="requests per KEY_RATE_WINDOW_SECONDS per key; 0: off"
    )
    key_rate_window_seconds: int = Field(60, ge=1)
    key_concurrency_limit: int = Field(
        32, ge=0, description="requests of one key in flight at once; 0: off"
    )
    key_limits_sync_seconds: float = Field(
        1.0,
        ge=0.05,
        le=60,
        description="seconds between two shares of the per-key counts through Postgres",
    )
    serve_workers: int = Field(
        1, ge=1, description="worker processes; set by `branchloans serve --workers`"
    )

    db_startup_timeout: float = Field(
        30.0, ge=0, description="seconds startup waits for Postgres, with backoff"
    )
    shutdown_drain_seconds: float = Field(
        1.0, ge=0, le=60, description="after SIGTERM, seconds of 503 readiness before closing"
    )
    shutdown_grace_seconds: float = Field(
        20.0, gt=0, description="seconds in-flight requests get to finish at shutdown"
    )

    metrics_enabled: bool = True
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve /metrics on this port only; unset: on the API's port in "
        "development, nowhere elsewhere",
    )
    metrics_cache_seconds: float = Field(
        5.0, ge=0, description="seconds a scrape reuses the database figures"
    )

    idempotency_key_ttl_hours: float = Field(
        24, gt=0, description="how long a stored Idempotency-Key answer is replayed"
    )
    idempotency_purge_interval: float = Field(
        300, ge=0, description="seconds between background purges; 0 turns them off"
    )
    idempotency_lock_timeout: float = Field(
        5, gt=0, description="seconds a retry waits for the first request with its key"
    )
    idempotency_keys_per_client: int = Field(
        1000, ge=1, description="new Idempotency-Keys a client may store per window"
    )
    idempotency_key_window_seconds: float = Field(
        60, gt=0, description="the window IDEMPOTENCY_KEYS_PER_CLIENT counts over"
    )

    auth_required: bool | None = Field(
        default=None,
        description="demand API keys; always on outside development, off there unless set",
    )
    api_key_cache_seconds: float = Field(
        5, ge=0, description="how long a key lookup is reused; bounds revocation delay"
    )
    api_key_unknown_cache_seconds: float = Field(
        30, ge=0, description="how long an unknown key id is remembered as unknown"
    )
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins browsers may call the API from, comma-separated; none by default",
    )
    cursor_signing_keys: Annotated[
        tuple[SecretStr, ...],
        NoDecode,
        Field(
            description="keys that sign paging cursors, comma-separated: the first signs, any "
            "verifies (rotation); production needs each at least 32 characters, not the default"
        ),
    ] = (SecretStr(DEVELOPMENT_CURSOR_KEY),)
    migration_database_url: PostgresDsn | None = Field(
        default=None,
        description="owner connection for `branchloans migrate`; DATABASE_URL when unset",
    )

    @field_validator("cors_allowed_origins", "cursor_signing_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cursor_signing_keys")
    @classmethod
    def _some_cursor_key(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if not value:
            raise ValueError("CURSOR_SIGNING_KEYS needs at least one key")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_settings(self) -> Self:
        if self.app_env is not AppEnv.DEVELOPMENT and self.auth_required is False:
            raise ValueError(f"AUTH_REQUIRED=false is refused when APP_ENV={self.app_env}")
        if self.app_env is not AppEnv.PRODUCTION:
            return self
        # Debug logs carry request details (borrowers, amounts) that production must not keep.
        if self.log_level == "DEBUG":
            raise ValueError("LOG_LEVEL=DEBUG is refused when APP_ENV=production")
        urls = {
            "DATABASE_URL": self.database_url,
            "MIGRATION_DATABASE_URL": self.migration_database_url,
        }
        for name, url in urls.items():
            if url is None:
                continue
            password = unquote(url.hosts()[0]["password"] or "")
            if not password.strip():
                raise ValueError(f"APP_ENV=production needs a database password in {name}")
            if password.lower() in KNOWN_DEFAULT_PASSWORDS:
                raise ValueError(
                    f"APP_ENV=production refuses a default or example database password; "
                    f"set a generated one in {name}"
                )
            if len(password) < MIN_PRODUCTION_PASSWORD_LENGTH:
                raise ValueError(
                    f"APP_ENV=production refuses a database password shorter than "
                    f"{MIN_PRODUCTION_PASSWORD_LENGTH} characters in {name}; generate one "
                    "(openssl rand -hex 24)"
                )
        if any("*" in origin for origin in self.cors_allowed_origins):
            raise ValueError(
                "APP_ENV=production refuses a wildcard in CORS_ALLOWED_ORIGINS; list the origins"
            )
        for network in self.trusted_proxies:
            if _too_wide_to_trust(network):
                raise ValueError(
                    f"APP_ENV=production refuses TRUSTED_PROXIES={network}: it would let "
                    "anyone there name the client; list the proxies (a public network no "
                    f"wider than /{_WIDEST_PUBLIC_PREFIX[network.version]})"
                )
        if self.api_key_cache_seconds > MAX_PRODUCTION_KEY_CACHE_SECONDS:
            raise ValueError(
                f"APP_ENV=production refuses API_KEY_CACHE_SECONDS above "
                f"{MAX_PRODUCTION_KEY_CACHE_SECONDS}: a revoked key would work that long"
            )
        for key in self.cursor_signing_keys:
            secret = key.get_secret_value()
            if secret == DEVELOPMENT_CURSOR_KEY or len(secret) < MIN_CURSOR_KEY_LENGTH:
                raise ValueError(
                    "APP_ENV=production refuses the default or a short cursor signing key; set "
                    f"CURSOR_SIGNING_KEYS to generated keys of at least {MIN_CURSOR_KEY_LENGTH} "
                    "characters (e.g. openssl rand -hex 32)"
                )
        return self

    @property
    def requires_auth(self) -> bool:
        """Whether requests need an API key."""
        if self.auth_required is None:
            return self.app_env is not AppEnv.DEVELOPMENT
        return self.auth_required

    @property
    def limits_keys(self) -> bool:
        """Whether requests are counted against per-key limits (keys are needed for that)."""
        return self.requires_auth and bool(self.key_rate_limit or self.key_concurrency_limit)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return (value.strip().lower() or None) if isinstance(value, str) else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_trusted_proxies(cls, value: object) -> object:
        # "10.0.0.7, 172.16.0.0/12": a host is a network of one address; host bits are forgiven.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        return tuple(
            ipaddress.ip_network(item.strip() if isinstance(item, str) else item, strict=False)
            for item in items
            if not isinstance(item, str) or item.strip()
        )

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _require_asyncpg(cls, value: PostgresDsn | None) -> PostgresDsn | None:
        if value is None:
            return value
        if value.scheme != "postgresql+asyncpg":
            raise ValueError("DATABASE_URL must use the postgresql+asyncpg:// scheme")
        if not value.path or value.path == "/":
            raise ValueError("DATABASE_URL must name a database")
        return value

    @property
    def metrics_on_api_port(self) -> bool:
        """Whether the API's own port answers /metrics: only in development without a
        METRICS_PORT, since the metrics show what `/api/stats` guards with a scope."""
        return self.metrics_port is None and self.app_env is AppEnv.DEVELOPMENT

    @property
    def resolved_log_format(self) -> LogFormat:
        """LOG_FORMAT, or its default: readable console lines in development, JSON elsewhere."""
        return self.log_format or ("console" if self.app_env is AppEnv.DEVELOPMENT else "json")

    @property
    def database_name(self) -> str:
        """The database the service works in, taken from DATABASE_URL."""
        assert self.database_url.path is not None
        return self.database_url.path.lstrip("/")

    @property
    def owner_database_url(self) -> str:
        """The owner's connection (MIGRATION_DATABASE_URL, else DATABASE_URL), aimed at the
        service's database: migrations and key management run as the owner."""
        url = (self.migration_database_url or self.database_url).encoded_string()
        return make_url(url).set(database=self.database_name).render_as_string(hide_password=False)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
