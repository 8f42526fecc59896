"""No secret is committed: the deployment files hold only throwaway credentials that
production refuses, and no keys, certificates or passwords in URLs."""

import re
from pathlib import Path

import pytest

from branchloans.config import KNOWN_DEFAULT_PASSWORDS

ROOT = Path(__file__).resolve().parents[1]
SCANNED = sorted(
    path for folder in ("envs", "deploy") for path in (ROOT / folder).rglob("*") if path.is_file()
)
FORBIDDEN = {
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an API key": re.compile(r"blk_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}"),
    "a password in a URL": re.compile(r"://[^\s:/@${}]+:(?!\$\{)[^\s@/]+@"),
    "a cloud access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
}
ASSIGNMENT = re.compile(r"^(?P<key>[A-Z0-9_]*(PASSWORD|SECRET|TOKEN)[A-Z0-9_]*)=(?P<value>.*)$")


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_scan_covers_the_deployment_files() -> None:
    names = {_relative(path) for path in SCANNED}

    assert {"envs/dev.env", "envs/staging.env", "envs/prod.env"} <= names
    assert any(name.startswith("deploy/nginx/") for name in names)
    assert any(name.startswith("deploy/k8s/") for name in names)


@pytest.mark.parametrize("path", SCANNED, ids=_relative)
def test_no_key_or_credential_is_committed(path: Path) -> None:
    text = path.read_text(errors="replace")

    found = [kind for kind, pattern in FORBIDDEN.items() if pattern.search(text)]

    assert not found, f"{_relative(path)} holds {', '.join(found)}"


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
