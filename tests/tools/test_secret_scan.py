"""The secret scanner (detect-secrets with the reviewed baseline) catches a planted cloud key and
a database password, in the history (CI, `make secrets`) and in staged files (pre-commit)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import secret_scan

ROOT = secret_scan.ROOT
BIN = Path(sys.executable).parent
PLANTED = "deploy/leaked.env"
FINDING = re.compile(r"^(?P<path>\S+):\d+: (?P<kind>.+)$", re.MULTILINE)
# Fakes in the formats the scanner knows: an AWS access key id and a URL with a password.
FAKE_AWS_KEY = "AWS_ACCESS_KEY_ID=AKIAZ3MXQ7RW5TY2PL4K"  # pragma: allowlist secret
FAKE_DB_URL = "DATABASE_URL=postgresql://loans:Xk29fhQ2mdPq@db/loans"  # pragma: allowlist secret


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A shallow clone of this repository with the working tree's scanner, baseline and hooks."""
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "--quiet", "--depth=1", f"file://{ROOT}", str(clone))
    for name in (secret_scan.BASELINE, ".pre-commit-config.yaml"):
        shutil.copy(ROOT / name, clone / name)
    shutil.copytree(
        ROOT / "tools", clone / "tools", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.pyc")
    )
    _git(clone, "add", "--all")
    _git(clone, "commit", "--quiet", "--allow-empty", "-m", "chore: the working tree's config")
    # The hooks run the tools `make bootstrap` installed; the clone borrows them.
    (clone / ".venv").symlink_to(ROOT / ".venv")
    return clone


@pytest.fixture
def leaked_then_removed(copy: Path) -> Path:
    """The copy with a commit that leaks both fakes and a later one that deletes them."""
    (copy / PLANTED).write_text(f"{FAKE_AWS_KEY}\n{FAKE_DB_URL}\n")
    _git(copy, "add", PLANTED)
    _git(copy, "commit", "--quiet", "-m", "chore: oops")
    _git(copy, "rm", "--quiet", PLANTED)
    _git(copy, "commit", "--quiet", "-m", "chore: remove it again")
    return copy


def scan_history(repo: Path) -> tuple[int, set[tuple[str, str]]]:
    """`make secrets` in `repo`: its exit status and the (path, kind) of each finding.

    A process of its own: detect-secrets forks workers, and forking this multi-threaded test
    process could deadlock them.
    """
    result = subprocess.run(
        [sys.executable, "-m", "tools.secret_scan"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    findings = {(match["path"], match["kind"]) for match in FINDING.finditer(result.stderr)}
    return result.returncode, findings


def test_history_scan_catches_a_key_and_a_password_removed_since(
    leaked_then_removed: Path,
) -> None:
    status, findings = scan_history(leaked_then_removed)

    assert status == 1
    assert findings == {(PLANTED, "AWS Access Key"), (PLANTED, "Basic Auth Credentials")}


def test_history_scan_of_the_unchanged_copy_finds_nothing(copy: Path) -> None:
    assert scan_history(copy) == (0, set())


def test_pre_commit_hook_refuses_a_staged_key_and_password(copy: Path) -> None:
    (copy / PLANTED).write_text(f"{FAKE_AWS_KEY}\n{FAKE_DB_URL}\n")
    _git(copy, "add", PLANTED)

    result = subprocess.run(
        [BIN / "pre-commit", "run", "detect-secrets"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "AWS Access Key" in result.stdout
    assert "Basic Auth Credentials" in result.stdout
