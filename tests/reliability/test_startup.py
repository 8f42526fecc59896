"""Startup: wait for Postgres with backoff, refuse a malformed configuration clearly."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import make_url

from branchloans.app import create_app
from branchloans.cli import main
from branchloans.config import get_settings
from tests.reliability.faultproxy import Fault, FaultProxy
from tests.support import make_settings


@pytest.fixture
async def refusing_proxy(committed_database_url: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A proxy to Postgres that refuses connections, and a DATABASE_URL through it."""
    url = make_url(committed_database_url)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxy.set(Fault.REFUSE)
    yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False)
    await proxy.stop()


async def test_startup_waits_until_the_database_answers(
    refusing_proxy: tuple[FaultProxy, str],
) -> None:
    proxy, database_url = refusing_proxy
    app = create_app(make_settings(database_url, db_startup_timeout=20))

    async def database_comes_back() -> None:
        await asyncio.sleep(1.0)
        proxy.set(Fault.NONE)

    comeback = asyncio.create_task(database_comes_back())
    async with app.router.lifespan_context(app):
        assert comeback.done(), "startup finished before the database was back"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get("/readiness")).status_code == 200


async def test_startup_gives_up_after_its_timeout(
    refusing_proxy: tuple[FaultProxy, str],
) -> None:
    _, database_url = refusing_proxy
    app = create_app(make_settings(database_url, db_startup_timeout=0.5))

    with pytest.raises(OSError):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.parametrize(
    ("database_url", "complaint"),
    [
        ("mysql://user@localhost/loans", "postgresql+asyncpg"),
        ("postgresql+asyncpg://user@localhost", "must name a database"),
        ("not a url", "DATABASE_URL"),
    ],
)
def test_malformed_database_url_exits_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    complaint: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert main(["serve"]) == 2
    finally:
        get_settings.cache_clear()

    error = capsys.readouterr().err
    assert error.startswith("invalid configuration:")
    assert "DATABASE_URL" in error
    assert complaint in error
    assert "Traceback" not in error
