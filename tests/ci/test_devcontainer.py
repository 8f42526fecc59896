"""The dev container: devcontainer.json follows the Dev Container specification, its compose
file the Compose specification, and it gives the tests what they expect (Postgres on
127.0.0.1:5432, the Debian packages, the locked tools) with the API's port forwarded."""

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.ci.devcontainer_schema import DEVCONTAINER_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
DEVCONTAINER = ROOT / ".devcontainer" / "devcontainer.json"


@pytest.fixture
def config() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(DEVCONTAINER.read_text())
    return parsed


@pytest.fixture
def compose(config: dict[str, Any]) -> dict[str, Any]:
    [name] = config["dockerComposeFile"]
    parsed: dict[str, Any] = yaml.safe_load((DEVCONTAINER.parent / name).read_text())
    return parsed


def _errors(config: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(DEVCONTAINER_SCHEMA)
    return [error.message for error in validator.iter_errors(config)]


def test_devcontainer_json_matches_the_dev_container_schema(config: dict[str, Any]) -> None:
    assert _errors(config) == []


def test_schema_refuses_a_misspelt_property(config: dict[str, Any]) -> None:
    config["forwardPort"] = config.pop("forwardPorts")

    assert _errors(config) == [
        "Additional properties are not allowed ('forwardPort' was unexpected)"
    ]


def test_schema_refuses_an_action_compose_does_not_know(config: dict[str, Any]) -> None:
    config["shutdownAction"] = "stopContainer"

    assert len(_errors(config)) == 1


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())

    jsonschema.validate(compose, schema)


def test_the_services_it_opens_exist(config: dict[str, Any], compose: dict[str, Any]) -> None:
    assert {config["service"], *config["runServices"]} <= set(compose["services"])


def test_postgres_is_on_loopback_5432_with_trust_as_the_tests_expect(
    config: dict[str, Any], compose: dict[str, Any]
) -> None:
    database = compose["services"]["db"]

    assert compose["services"][config["service"]]["network_mode"] == "service:db"
    assert database["image"].startswith("postgres:15")
    assert database["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"


def test_creation_installs_the_test_packages_and_the_locked_tools(config: dict[str, Any]) -> None:
    assert config["postCreateCommand"] == "sudo bash .ci/install-apt-packages && make bootstrap"


def test_the_api_and_database_ports_are_forwarded(config: dict[str, Any]) -> None:
    assert {8000, 5432} <= set(config["forwardPorts"])
