"""Structured logs: JSON lines, one access line per request, the request id on every line."""

import logging
import uuid
from datetime import datetime
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from branchloans.app import create_app
from branchloans.config import AppEnv, Settings
from tests.support import json_lines, live_server, make_settings, started_client

ACCESS_FIELDS = {
    "timestamp",
    "level",
    "message",
    "request_id",
    "method",
    "path",
    "route",
    "status_code",
    "duration_ms",
    "client",
}


def app_lines(output: str) -> list[dict[str, Any]]:
    """The JSON lines the app wrote; the test client's own log lines are left out."""
    return [line for line in json_lines(output) if line.get("logger") != "httpx"]


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["message"] == "Request completed"]


def chatty_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.get("/chatty")
    async def chatty() -> dict[str, str]:
        structlog.get_logger("tests").info("structlog line", step=1)
        logging.getLogger("tests.stdlib").warning("stdlib line %d", 2)
        return {"said": "plenty"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom internals")

    return app


async def test_every_line_of_a_request_carries_its_id(
    json_settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started_client(chatty_app(json_settings), connection) as http:
        capsys.readouterr()
        response = await http.get("/chatty", headers={"X-Request-ID": "follow-me"})

    lines = app_lines(capsys.readouterr().out)
    assert response.status_code == 200
    assert [line["message"] for line in lines] == [
        "structlog line",
        "stdlib line 2",
        "Request completed",
    ]
    assert {line["request_id"] for line in lines} == {"follow-me"}


async def test_one_access_line_per_request_with_the_seed_fields(
    json_settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    loan_id = uuid.uuid4()
    async with started_client(create_app(json_settings), connection) as http:
        capsys.readouterr()
        responses = [await http.get(f"/api/loans/{loan_id}") for _ in range(3)]

    lines = access_lines(app_lines(capsys.readouterr().out))
    assert [line["request_id"] for line in lines] == [r.headers["x-request-id"] for r in responses]
    line = lines[0]
    assert set(line) >= ACCESS_FIELDS
    assert line["level"] == "INFO"
    assert line["method"] == "GET"
    assert line["path"] == f"/api/loans/{loan_id}"
    assert line["route"] == "/api/loans/{loan_id}"
    assert line["status_code"] == 404
    assert line["client"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None
    assert line["timestamp"].endswith("Z")


async def test_a_path_no_route_matches_is_logged_without_route(
    json_settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started_client(create_app(json_settings), connection) as http:
        capsys.readouterr()
        await http.get("/no/such/thing")

    (line,) = access_lines(app_lines(capsys.readouterr().out))
    assert line["route"] is None
    assert line["path"] == "/no/such/thing"
    assert line["status_code"] == 404


async def test_an_unhandled_exception_is_logged_once_with_its_traceback(
    json_settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    # raise_app_exceptions stays on: an exception escaping the app would fail this test,
    # as it would make uvicorn log the failure a second time.
    async with started_client(chatty_app(json_settings), connection) as http:
        capsys.readouterr()
        response = await http.get("/boom", headers={"X-Request-ID": "it-broke"})

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == "it-broke"
    assert "kaboom" not in response.text
    assert "Traceback" not in response.text
    lines = app_lines(capsys.readouterr().out)
    failures = [line for line in lines if "exception" in line]
    assert len(failures) == 1
    assert failures[0]["level"] == "ERROR"
    assert failures[0]["request_id"] == "it-broke"
    assert failures[0]["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: kaboom internals" in failures[0]["exception"]
    (access,) = access_lines(lines)
    assert access["status_code"] == 500
    assert access["request_id"] == "it-broke"


def test_standard_library_and_uvicorn_lines_use_the_same_renderer(
    json_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    create_app(json_settings)
    capsys.readouterr()

    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn.access").info("GET / 200")

    (line,) = json_lines(capsys.readouterr().out)
    assert line["message"] == "Started server process [42]"
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "INFO"
    assert "timestamp" in line


async def test_log_level_is_honoured(
    json_settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = json_settings.model_copy(update={"log_level": "WARNING"})
    async with started_client(chatty_app(quiet), connection) as http:
        capsys.readouterr()
        await http.get("/liveness")
        await http.get("/chatty")

    assert [line["message"] for line in app_lines(capsys.readouterr().out)] == ["stdlib line 2"]


async def test_development_logs_readable_console_lines(
    settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started_client(create_app(settings), connection) as http:
        capsys.readouterr()
        await http.get("/liveness", headers={"X-Request-ID": "console-id"})

    output = capsys.readouterr().out
    line = next(line for line in output.splitlines() if "Request completed" in line)
    assert not line.startswith("{")
    assert "request_id=console-id" in line
    assert "status_code=200" in line


@pytest.mark.parametrize(
    ("app_env", "log_format", "expected"),
    [
        (AppEnv.DEVELOPMENT, None, "console"),
        (AppEnv.STAGING, None, "json"),
        (AppEnv.PRODUCTION, None, "json"),
        (AppEnv.DEVELOPMENT, "json", "json"),
        (AppEnv.PRODUCTION, "console", "console"),
    ],
)
def test_log_format_defaults_by_environment(
    app_env: AppEnv, log_format: str | None, expected: str
) -> None:
    # A password production accepts; nothing connects.
    url = "postgresql+asyncpg://app:k3Jq9vXz2Lw8pR4t@h/db"
    settings = make_settings(url, app_env=app_env, log_format=log_format)

    assert settings.resolved_log_format == expected


def test_log_format_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    monkeypatch.setenv("LOG_LEVEL", "warning")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.resolved_log_format == "json"
    assert settings.log_level == "WARNING"


def test_server_start_logs_only_the_services_own_lines(database_url: str) -> None:
    with live_server({"DATABASE_URL": database_url, "LOG_FORMAT": "json"}) as server:
        loggers = {line.get("logger") for line in json_lines(server.output())}

    assert loggers <= {None, "uvicorn.error", "branchloans.app"}, loggers
