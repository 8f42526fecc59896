"""Fixtures of the deployment tests: compose.yaml as loaded, and as each env file renders it."""

from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    COMPOSE_FILE,
    ENV_DIR,
    ENVIRONMENTS,
    PRODUCTION_SECRETS,
    interpolate,
    read_env_file,
)

# What an operator exports before starting production (any value that is not a default).
OPERATOR_SECRETS = dict.fromkeys(PRODUCTION_SECRETS, "k3Jq9vXz2Lw8pR4t") | {
    # Production takes cursor keys of 32 characters or more.
    "CURSOR_SIGNING_KEYS": "k3Jq9vXz2Lw8pR4t" * 2,
}


@pytest.fixture(scope="session")
def compose_document() -> dict[str, Any]:
    """compose.yaml as YAML, anchors and merge keys resolved, nothing interpolated."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


@pytest.fixture(scope="session", params=ENVIRONMENTS)
def environment(request: pytest.FixtureRequest) -> str:
    """Each environment's name in turn: dev, staging, prod."""
    name: str = request.param
    return name


def environment_values(environment: str) -> dict[str, str]:
    """What Compose interpolates with: the env file, plus the operator's secrets in prod."""
    values = read_env_file(ENV_DIR / f"{environment}.env")
    if environment == "prod":
        values |= OPERATOR_SECRETS
    return values


@pytest.fixture(scope="session")
def rendered(compose_document: dict[str, Any], environment: str) -> dict[str, Any]:
    """compose.yaml interpolated with one environment's values."""
    result: dict[str, Any] = interpolate(compose_document, environment_values(environment), set())
    return result
