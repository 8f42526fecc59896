"""The changelog: git-cliff reads cliff.toml, groups conventional commits by type, leaves the
rest out, and gives a tag's own section for its release notes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GIT_CLIFF = Path(sys.executable).parent / "git-cliff"
CONVENTIONAL = re.compile(r"^(?P<type>[a-z]+)(\([^)]*\))?!?: (?P<description>.+)$")
GROUPS = {
    "feat": "Features",
    "fix": "Bug fixes",
    "perf": "Performance",
    "refactor": "Refactoring",
    "docs": "Documentation",
    "test": "Tests",
    "ci": "CI and build",
    "build": "CI and build",
    "chore": "Chores",
    "style": "Style",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def changelog(repo: Path, *options: str) -> str:
    """What git-cliff writes for `repo` with this project's configuration."""
    return subprocess.run(
        [GIT_CLIFF, "--config", ROOT / "cliff.toml", "--repository", repo, *options],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A repository with a v0.1.0 release and unreleased commits after it."""
    _git(tmp_path, "init", "--quiet", "--initial-branch=main")
    for message in ("feat: apply for a loan", "fix: round cents half-even", "Merge branch 'x'"):
        _git(tmp_path, "commit", "--quiet", "--allow-empty", "-m", message)
    _git(tmp_path, "tag", "v0.1.0")
    for message in ("perf(db): one round trip per read", "feat!: drop the v0 routes"):
        _git(tmp_path, "commit", "--quiet", "--allow-empty", "-m", message)
    return tmp_path


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def test_commits_are_grouped_by_type_under_their_release(history: Path) -> None:
    text = changelog(history)

    released = _section(text, "0.1.0")
    assert "### Features\n- apply for a loan" in released
    assert "### Bug fixes\n- round cents half-even" in released
    unreleased = _section(text, "Unreleased")
    assert "### Performance\n- **db**: one round trip per read" in unreleased
    assert "- **breaking:** drop the v0 routes" in unreleased


def test_unconventional_commits_are_left_out(history: Path) -> None:
    assert "Merge branch" not in changelog(history)


def test_release_notes_are_the_latest_tag_alone(history: Path) -> None:
    notes = changelog(history, "--latest", "--strip", "header")

    assert notes.startswith("## 0.1.0")
    assert "apply for a loan" in notes
    assert "Unreleased" not in notes


def test_the_newest_commits_of_this_repository_appear_under_their_type() -> None:
    subjects = _git(ROOT, "log", "-n", "20", "--no-merges", "--format=%s").splitlines()
    newest = [
        match for s in subjects if (match := CONVENTIONAL.match(s)) and match["type"] in GROUPS
    ]
    assert newest, "none of the newest commits is conventional"

    text = changelog(ROOT)

    for commit in newest:
        line = text.index(commit["description"].strip())
        heading = text[text.rindex("\n### ", 0, line) :].split("\n")[1]
        assert heading == f"### {GROUPS[commit['type']]}", commit.string
