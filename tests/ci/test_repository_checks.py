"""The repository checks (pre-commit hooks, the history's secret scan, the dependency audit)
run in the workflow and in .ci/run, the audit without the leniency .ci/run needs here."""

from typing import Any

import pytest

from tests.ci import pipeline


def _runs(workflow: dict[str, Any], job: str) -> list[str]:
    steps = workflow["jobs"].get(job, {}).get("steps", [])
    return [str(step["run"]).strip() for step in steps if "run" in step]


def repository_check_problems(workflow: dict[str, Any]) -> list[str]:
    """The lint job runs the hooks and the history scan on a full clone; a job audits."""
    problems = []
    for command in ("make pre-commit", "make secrets"):
        if command not in _runs(workflow, "lint"):
            problems.append(f"the lint job does not run `{command}`")
    checkouts = [
        step.get("with") or {}
        for step in workflow["jobs"]["lint"]["steps"]
        if str(step.get("uses", "")).startswith("actions/checkout@")
    ]
    if not checkouts or checkouts[0].get("fetch-depth") != 0:
        problems.append("the lint job checks out one commit: the secret scan misses the history")
    if not any("make audit" in _runs(workflow, job) for job in workflow["jobs"]):
        problems.append("no job runs exactly `make audit`")
    if "audit" not in (workflow["jobs"].get("publish", {}).get("needs") or []):
        problems.append("the image is published without waiting for the audit")
    return problems


@pytest.fixture
def workflow() -> dict[str, Any]:
    parsed: dict[str, Any] = pipeline.load_yaml(pipeline.PIPELINE)
    return parsed


def test_workflow_runs_the_hooks_the_history_scan_and_the_audit(
    workflow: dict[str, Any],
) -> None:
    assert repository_check_problems(workflow) == []


def test_check_notices_a_shallow_checkout(workflow: dict[str, Any]) -> None:
    del workflow["jobs"]["lint"]["steps"][0]["with"]["fetch-depth"]

    assert repository_check_problems(workflow) == [
        "the lint job checks out one commit: the secret scan misses the history"
    ]


def test_check_notices_a_lenient_audit(workflow: dict[str, Any]) -> None:
    step = next(s for s in workflow["jobs"]["audit"]["steps"] if s.get("run") == "make audit")
    step["run"] = "make audit AUDIT_OPTIONS=--tolerate-unreachable"

    assert repository_check_problems(workflow) == ["no job runs exactly `make audit`"]


def test_ci_run_runs_the_hooks_the_history_scan_and_the_audit() -> None:
    lines = [line.strip() for line in pipeline.CI_RUN.read_text().splitlines()]

    assert "make pre-commit" in lines
    assert "make secrets" in lines
    assert any(line.startswith("make audit") for line in lines)


def test_a_version_tag_publishes_release_notes_from_git_cliff() -> None:
    release = pipeline.load_yaml(pipeline.WORKFLOWS / "release.yml")
    runs = _runs(release, "release")

    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert any("git-cliff --config cliff.toml --latest" in run for run in runs)
    assert any(run.startswith("gh release create") and "--notes-file" in run for run in runs)
