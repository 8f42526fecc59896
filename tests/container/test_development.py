"""The development image as `compose --env-file envs/dev.env up --watch` runs it: migrate, then
the api with `serve --reload`, which serves an edited source file once it is synced in."""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.container.conftest import RunningApi, Stack, build_image, start_api
from tests.container.engine import REPO, podman, remove_container, rendered_services, run_service
from tests.deploy.support import ENV_DIR, read_env_file

RELOADED_VERSION = "0.0.0+reloaded"


@pytest.fixture(scope="module")
def development_image(stack: Stack) -> Iterator[str]:
    tag = build_image("development", f"localhost/branch-loans-api:test-{stack.run_id}-dev")
    yield tag
    podman("rmi", tag, check=False)


@pytest.fixture(scope="module")
def development_services(
    stack: Stack, development_image: str, migrate_run: subprocess.CompletedProcess[str]
) -> dict[str, dict[str, object]]:
    """dev.env's services on the session's database (production's migrate ran first)."""
    assert migrate_run.returncode == 0, migrate_run.stderr
    shared = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "API_DB_USER", "API_DB_PASSWORD")
    values = read_env_file(ENV_DIR / "dev.env") | {name: stack.values[name] for name in shared}
    return rendered_services(values | {"API_IMAGE": development_image})


@pytest.fixture(scope="module")
def development_api(
    stack: Stack, development_services: dict[str, dict[str, object]]
) -> Iterator[RunningApi]:
    migrate = f"branchloans-test-{stack.run_id}-migrate-dev"
    try:
        result = run_service(migrate, development_services["migrate"], stack.volumes)
    finally:
        remove_container(migrate)
    assert result.returncode == 0, result.stderr
    name = f"branchloans-test-{stack.run_id}-api-dev"
    try:
        yield start_api(stack, name, development_services["api"])
    finally:
        remove_container(name)


def _served_version(api: RunningApi) -> str | None:
    try:
        version: str = httpx.get(f"{api.url}/openapi.json", timeout=2).json()["info"]["version"]
    except (httpx.TransportError, ValueError):
        return None
    return version


def test_serve_reload_serves_an_edited_source_file(
    development_api: RunningApi, tmp_path: Path
) -> None:
    edited = tmp_path / "__init__.py"
    original = (REPO / "src" / "branchloans" / "__init__.py").read_text()
    edited.write_text(f'{original}\n__version__ = "{RELOADED_VERSION}"\n')
    before = _served_version(development_api)

    # What `up --watch` does with an edit under ./src: copies it into /app/src.
    podman("cp", str(edited), f"{development_api.name}:/app/src/branchloans/__init__.py")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _served_version(development_api) != RELOADED_VERSION:
        time.sleep(0.5)

    assert before != RELOADED_VERSION
    assert _served_version(development_api) == RELOADED_VERSION
    assert "Reloading" in podman("logs", development_api.name)
