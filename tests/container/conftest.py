"""The image built once, a throwaway database, and compose.yaml's certs, migrate and api
services run from it in order, as production's env file renders them."""

import asyncio
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

from branchloans.migrate import asyncpg_dsn
from tests.container.engine import (
    BUILD_SCRIPT,
    podman,
    remove_container,
    rendered_services,
    require_rootful_podman,
    run_service,
)
from tests.deploy.support import ENV_DIR, free_port, read_env_file
from tests.support import SERVER_URL

CONTAINER_DIR = BUILD_SCRIPT.parents[2] / "tests" / "container"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here carries the `container` marker (`-m "not container"` leaves them out)."""
    for item in items:
        if item.path.is_relative_to(CONTAINER_DIR):
            item.add_marker(pytest.mark.container)


@dataclass(frozen=True)
class Stack:
    """What the session set up: names of the image, database, role and volumes."""

    run_id: str
    image: str
    database: str
    app_role: str
    volumes: dict[str, str]
    values: dict[str, str]

    def services(self, **overrides: str) -> dict[str, Any]:
        return rendered_services(self.values | overrides)


@dataclass(frozen=True)
class RunningApi:
    """An api container and the loopback URL its port 8000 is published on."""

    name: str
    url: str


def build_image(target: str, tag: str) -> str:
    """`make image` (or `make image-dev`), tagged `tag`; its elapsed time is printed."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BUILD_SCRIPT), target, tag], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    print(f"\n{target} image built in {time.monotonic() - started:.1f} s")  # noqa: T201
    return tag


async def _execute(*statements: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(SERVER_URL))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def run_id() -> str:
    require_rootful_podman()
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def runtime_image(run_id: str) -> Iterator[str]:
    tag = build_image("runtime", f"localhost/branch-loans-api:test-{run_id}")
    yield tag
    # The build stage stays in the layer cache for the next run.
    podman("rmi", tag, check=False)


@pytest.fixture(scope="session")
def stack(runtime_image: str, run_id: str) -> Iterator[Stack]:
    """An empty throwaway database, and production's env file pointed at it."""
    database = f"branchloans_test_container_{run_id}"
    app_role = f"branchloans_app_{run_id}"
    owner = make_url(SERVER_URL).username or "postgres"
    asyncio.run(_execute(f'CREATE DATABASE "{database}"'))
    volumes = {name: f"branchloans-test-{run_id}-{name}" for name in ("certs", "ca")}
    values = read_env_file(ENV_DIR / "prod.env") | {
        "API_IMAGE": runtime_image,
        "POSTGRES_USER": owner,
        "POSTGRES_DB": database,
        "API_DB_USER": app_role,
        # Production refuses default passwords; the test server trusts any.
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "API_DB_PASSWORD": secrets.token_hex(12),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(12),
        "CURSOR_SIGNING_KEYS": secrets.token_hex(32),
    }
    yield Stack(run_id, runtime_image, database, app_role, volumes, values)
    for volume in volumes.values():
        podman("volume", "rm", "--force", volume, check=False)
    asyncio.run(
        _execute(
            f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
            f'DROP ROLE IF EXISTS "{app_role}"',
        )
    )


@pytest.fixture(scope="session")
def certs_run(stack: Stack) -> subprocess.CompletedProcess[str]:
    name = f"branchloans-test-{stack.run_id}-certs"
    try:
        return run_service(name, stack.services()["certs"], stack.volumes)
    finally:
        remove_container(name)


@pytest.fixture(scope="session")
def migrate_run(stack: Stack) -> subprocess.CompletedProcess[str]:
    name = f"branchloans-test-{stack.run_id}-migrate"
    try:
        return run_service(name, stack.services()["migrate"], stack.volumes)
    finally:
        remove_container(name)


def wait_until_healthy(url: str, name: str, within: float = 60) -> None:
    """Until `url`/health answers 200; the container's logs when it never does."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    logs = podman("logs", name, check=False)
    raise AssertionError(f"{name} never became healthy:\n{logs[-4000:]}")


def start_api(stack: Stack, name: str, service: dict[str, Any]) -> RunningApi:
    """The api service detached, its port 8000 published on a free loopback port."""
    port = free_port()
    result = run_service(
        name, service, stack.volumes, "--publish", f"127.0.0.1:{port}:8000", detach=True
    )
    assert result.returncode == 0, result.stderr
    api = RunningApi(name, f"http://127.0.0.1:{port}")
    wait_until_healthy(api.url, name)
    return api


@pytest.fixture(scope="session")
def api(
    stack: Stack,
    certs_run: subprocess.CompletedProcess[str],
    migrate_run: subprocess.CompletedProcess[str],
) -> Iterator[RunningApi]:
    """The api service, started (like Compose) once certs and migrate succeeded."""
    assert certs_run.returncode == 0, certs_run.stderr
    assert migrate_run.returncode == 0, migrate_run.stderr
    name = f"branchloans-test-{stack.run_id}-api"
    try:
        yield start_api(stack, name, stack.services()["api"])
    finally:
        remove_container(name)


def create_api_key(stack: Stack, name: str) -> str:
    """A key made by `branchloans api-keys create` in a one-off container of the migrate
    service: keys are managed as the owner, whose password the api container never holds."""
    scopes = "loans:read,loans:write,loans:manage"
    service = stack.services()["migrate"] | {
        "command": [f"branchloans api-keys create --name {name} --scopes {scopes}"]
    }
    container = f"branchloans-test-{stack.run_id}-keys-{name}"
    try:
        result = run_service(container, service, stack.volumes)
    finally:
        remove_container(container)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="session")
def api_key(stack: Stack, api: RunningApi) -> str:
    return create_api_key(stack, "container-test")
