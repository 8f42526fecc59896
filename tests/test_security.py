"""Hardened defaults: security headers, CORS only when asked, auth outside development."""

import httpx
import pytest
from pydantic import ValidationError

from branchloans.app import SuperuserRefusedError, create_app
from branchloans.cli import main
from branchloans.config import AppEnv, get_settings
from tests.support import TEST_CURSOR_KEY, make_settings, serving, with_password


@pytest.mark.parametrize("path", ["/api/loans", "/api/nothing", "/health"])
async def test_responses_carry_security_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert (
        response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"])
async def test_documentation_pages_load_from_their_own_origin_only(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-security-policy"].startswith("default-src 'self';")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_cors_is_off_unless_configured(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/loans",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )

    assert "access-control-allow-origin" not in response.headers


async def test_cors_allows_only_the_configured_origins(database_url: str) -> None:
    settings = make_settings(database_url, cors_allowed_origins="https://app.branchloans.com")
    preflight = {"Access-Control-Request-Method": "POST"}

    async with serving(settings) as http:
        allowed = await http.options(
            "/api/loans", headers={"Origin": "https://app.branchloans.com", **preflight}
        )
        refused = await http.options(
            "/api/loans", headers={"Origin": "https://evil.example", **preflight}
        )

    assert allowed.headers["access-control-allow-origin"] == "https://app.branchloans.com"
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("env", [AppEnv.STAGING, AppEnv.PRODUCTION])
def test_auth_cannot_be_turned_off_outside_development(database_url: str, env: AppEnv) -> None:
    with pytest.raises(ValidationError, match="AUTH_REQUIRED=false"):
        make_settings(database_url, app_env=env, auth_required=False)


@pytest.mark.parametrize(
    ("env", "required"),
    [(AppEnv.DEVELOPMENT, False), (AppEnv.STAGING, True), (AppEnv.PRODUCTION, True)],
)
def test_auth_is_required_by_default_outside_development(
    database_url: str, env: AppEnv, required: bool
) -> None:
    settings = make_settings(with_password(database_url), app_env=env)

    assert settings.requires_auth is required


def test_production_refuses_debug_logging(database_url: str) -> None:
    with pytest.raises(ValidationError, match="LOG_LEVEL=DEBUG"):
        make_settings(
            with_password(database_url),
            app_env=AppEnv.PRODUCTION,
            log_level="DEBUG",
        )


def test_serve_refuses_reload_in_production(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", with_password(database_url))
    monkeypatch.setenv("CURSOR_SIGNING_KEYS", TEST_CURSOR_KEY)
    get_settings.cache_clear()
    try:
        assert main(["serve", "--reload"]) == 2
    finally:
        get_settings.cache_clear()

    assert "--reload" in capsys.readouterr().err


async def test_production_refuses_to_start_as_a_superuser(database_url: str) -> None:
    app = create_app(make_settings(with_password(database_url), app_env=AppEnv.PRODUCTION))

    with pytest.raises(SuperuserRefusedError, match="refuses to run as the superuser 'postgres'"):
        async with app.router.lifespan_context(app):
            pass
