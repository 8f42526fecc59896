"""The committed env files hold only throwaway passwords that production refuses, and
production's none at all. (Keys and credentials anywhere in the history are the secret
scanner's: `make secrets`, tools/secret_scan.py.)"""

import re
from pathlib import Path

import pytest

from branchloans.config import DEVELOPMENT_CURSOR_KEY, KNOWN_DEFAULT_PASSWORDS

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = re.compile(r"^(?P<key>[A-Z0-9_]*(PASSWORD|SECRET|TOKEN)[A-Z0-9_]*)=(?P<value>.*)$")


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", sorted((ROOT / "envs").glob("*.env")), ids=_relative)
def test_committed_passwords_are_throwaways_production_refuses(path: Path) -> None:
    assignments = [
        match for line in path.read_text().splitlines() if (match := ASSIGNMENT.match(line))
    ]

    for assignment in assignments:
        assert assignment["value"] in KNOWN_DEFAULT_PASSWORDS, (
            f"{_relative(path)}: {assignment['key']} is not a known throwaway; "
            "supply real secrets from the environment"
        )


def test_production_commits_no_password_at_all() -> None:
    production = (ROOT / "envs" / "prod.env").read_text().splitlines()

    assert not [line for line in production if ASSIGNMENT.match(line)]


@pytest.mark.parametrize("path", sorted((ROOT / "envs").glob("*.env")), ids=_relative)
def test_committed_cursor_keys_are_the_development_key_production_refuses(path: Path) -> None:
    keys = [
        line.partition("=")[2]
        for line in path.read_text().splitlines()
        if line.startswith("CURSOR_SIGNING_KEYS=")
    ]

    assert keys in ([], [DEVELOPMENT_CURSOR_KEY])
