"""Helpers the tests share that are not fixtures."""

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from sqlalchemy import make_url

from branchloans.app import create_app
from branchloans.config import Settings

SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def throwaway_database_url(purpose: str) -> str:
    """A URL on the test server for a database nobody else uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"branchloans_test_{purpose}_{worker}_{uuid.uuid4().hex[:8]}"
    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


def with_password(database_url: str, password: str = "k3Jq9vXz2Lw8") -> str:
    """`database_url` with a password production accepts (the local server trusts any)."""
    return make_url(database_url).set(password=password).render_as_string(hide_password=False)


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test, ignoring any `.env` file in the working directory."""
    return Settings(_env_file=None, database_url=database_url, **overrides)  # type: ignore[call-arg]


@asynccontextmanager
async def serving(
    settings: Settings,
    *,
    install: Callable[[FastAPI], Awaitable[None]] | None = None,
    raise_app_exceptions: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    """A started app built from `settings` (plus any routes `install` adds) and a client for
    it, with no test transaction."""
    application = create_app(settings)
    if install is not None:
        await install(application)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
