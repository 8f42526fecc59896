"""The CI/CD workflow keeps its promises: what runs when, exactly the README's test command,
no push from a pull request, least privilege, and an image named as the deployments expect.
Each check is also shown failing on a copy of the workflow broken the way it guards against."""

from typing import Any

import pytest

from tests.ci import pipeline


@pytest.fixture
def workflow() -> dict[str, Any]:
    """A fresh parse of the pipeline, free for a test to break."""
    parsed: dict[str, Any] = pipeline.load_yaml(pipeline.PIPELINE)
    return parsed


@pytest.fixture
def command() -> str:
    """The test command the README gives."""
    return pipeline.readme_test_command(pipeline.README.read_text())


def _step(workflow: dict[str, Any], job: str, uses: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return next(step for step in steps if str(step.get("uses", "")).startswith(uses + "@"))


def _command_step(workflow: dict[str, Any], command: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = workflow["jobs"]["test"]["steps"]
    return next(step for step in steps if str(step.get("run", "")).strip() == command)


def test_readme_test_command_is_make_test(command: str) -> None:
    assert command == "make test"


def test_ci_run_runs_the_readme_test_command_and_the_shared_package_list(command: str) -> None:
    lines = [line.strip() for line in pipeline.CI_RUN.read_text().splitlines()]

    assert command in lines
    assert f"bash {pipeline.APT_PACKAGES_SCRIPT}" in lines


def test_every_action_is_pinned_to_a_version_or_commit(workflow: dict[str, Any]) -> None:
    assert pipeline.pinning_problems(workflow) == []


def test_pinning_check_notices_an_action_on_a_branch(workflow: dict[str, Any]) -> None:
    _step(workflow, "lint", "actions/checkout")["uses"] = "actions/checkout@main"

    assert pipeline.pinning_problems(workflow) == [
        "job lint uses actions/checkout@main, not pinned to a version"
    ]


def test_pull_requests_main_and_version_tags_trigger_the_pipeline(
    workflow: dict[str, Any],
) -> None:
    assert pipeline.trigger_problems(workflow) == []


def test_trigger_check_notices_pull_requests_left_out(workflow: dict[str, Any]) -> None:
    del workflow["on"]["pull_request"]

    assert pipeline.trigger_problems(workflow) == ["pull requests do not run the pipeline"]


def test_test_job_runs_exactly_the_readme_command_on_postgres_16(
    workflow: dict[str, Any], command: str
) -> None:
    assert pipeline.suite_job_problems(workflow, command) == []


def test_test_job_check_notices_a_different_test_command(
    workflow: dict[str, Any], command: str
) -> None:
    _command_step(workflow, command)["run"] = "uv run pytest -x"

    assert pipeline.suite_job_problems(workflow, command) == [
        "the test job does not run exactly `make test` once",
        "the test job runs pytest itself instead of the README's command",
    ]


def test_test_job_check_notices_another_postgres_version(
    workflow: dict[str, Any], command: str
) -> None:
    workflow["jobs"]["test"]["services"]["postgres"]["image"] = "postgres:15"

    assert pipeline.suite_job_problems(workflow, command) == [
        "the test job's services are ['postgres:15'], not postgres:16"
    ]


def test_test_job_check_notices_the_database_url_missing(
    workflow: dict[str, Any], command: str
) -> None:
    del _command_step(workflow, command)["env"]["TEST_DATABASE_URL"]

    assert pipeline.suite_job_problems(workflow, command) == [
        "the test command's TEST_DATABASE_URL is not the service container"
    ]


def test_junit_and_coverage_reports_are_uploaded_even_when_tests_fail(
    workflow: dict[str, Any], command: str
) -> None:
    assert pipeline.report_problems(workflow, command) == []


def test_report_check_notices_an_upload_skipped_on_failure(
    workflow: dict[str, Any], command: str
) -> None:
    del _step(workflow, "test", "actions/upload-artifact")["if"]

    assert pipeline.report_problems(workflow, command) == [
        "the reports are not uploaded when tests fail (no `if: always()`)"
    ]


def test_report_check_notices_coverage_not_written(workflow: dict[str, Any], command: str) -> None:
    _command_step(workflow, command)["env"]["PYTEST_ADDOPTS"] = "--junitxml=junit.xml"

    assert pipeline.report_problems(workflow, command) == [
        "PYTEST_ADDOPTS of the test command lacks --cov=branchloans",
        "PYTEST_ADDOPTS of the test command lacks --cov-report=xml",
    ]


def test_pull_requests_never_log_in_push_or_attest(workflow: dict[str, Any]) -> None:
    assert pipeline.push_problems(workflow) == []


def test_push_check_notices_an_unguarded_publish_job(workflow: dict[str, Any]) -> None:
    del workflow["jobs"]["publish"]["if"]

    problems = pipeline.push_problems(workflow)

    assert "job publish may write packages on a pull request" in problems
    assert "job publish step docker/build-push-action may run on a pull request" in problems


def test_push_check_notices_the_pull_request_build_pushing(workflow: dict[str, Any]) -> None:
    _step(workflow, "build", "docker/build-push-action")["with"]["push"] = True

    assert pipeline.push_problems(workflow) == [
        "job build step docker/build-push-action may run on a pull request"
    ]


def test_push_check_accepts_a_step_guarded_by_itself(workflow: dict[str, Any]) -> None:
    build = _step(workflow, "build", "docker/build-push-action")
    build["with"]["push"] = True
    build["if"] = "${{ github.event_name == 'push' }}"

    assert pipeline.push_problems(workflow) == []


def test_every_job_has_its_own_permissions_and_none_by_default(
    workflow: dict[str, Any],
) -> None:
    assert pipeline.permission_problems(workflow) == []


def test_permission_check_notices_a_job_without_permissions(workflow: dict[str, Any]) -> None:
    del workflow["jobs"]["lint"]["permissions"]

    assert pipeline.permission_problems(workflow) == ["job lint has no permissions block"]


def test_permission_check_notices_broad_default_permissions(workflow: dict[str, Any]) -> None:
    workflow["permissions"] = "write-all"

    assert pipeline.permission_problems(workflow) == [
        "the workflow-level permissions are not empty"
    ]


def test_a_newer_run_on_the_same_branch_cancels_the_older(workflow: dict[str, Any]) -> None:
    assert pipeline.concurrency_problems(workflow) == []


def test_concurrency_check_notices_runs_left_running(workflow: dict[str, Any]) -> None:
    workflow["concurrency"]["cancel-in-progress"] = False

    assert pipeline.concurrency_problems(workflow) == ["superseded runs are not cancelled"]


def test_image_is_ghcr_owner_branch_loans_api(workflow: dict[str, Any]) -> None:
    assert pipeline.image_name_problems(workflow) == []


def test_image_name_check_notices_another_name(workflow: dict[str, Any]) -> None:
    workflow["env"]["IMAGE_NAME"] = "branch-loan-api"

    assert pipeline.image_name_problems(workflow) == [
        "the image name is branch-loan-api, not branch-loans-api"
    ]


def test_image_name_check_notices_an_owner_left_in_mixed_case(workflow: dict[str, Any]) -> None:
    steps = workflow["jobs"]["publish"]["steps"]
    naming = next(step for step in steps if step.get("id") == "image")
    naming["run"] = naming["run"].replace("${OWNER,,}", "${OWNER}")

    assert pipeline.image_name_problems(workflow) == [
        "job publish does not name the image from the lowercased owner"
    ]


def test_image_tags_are_branch_short_sha_latest_on_main_and_version(
    workflow: dict[str, Any],
) -> None:
    assert pipeline.tag_problems(workflow) == []


def test_tag_check_notices_latest_following_version_tags(workflow: dict[str, Any]) -> None:
    del _step(workflow, "publish", "docker/metadata-action")["with"]["flavor"]

    assert pipeline.tag_problems(workflow) == [
        "job publish may tag a version as latest (flavor latest=auto)"
    ]


def test_tag_check_notices_the_short_sha_tag_missing(workflow: dict[str, Any]) -> None:
    metadata = _step(workflow, "build", "docker/metadata-action")["with"]
    metadata["tags"] = metadata["tags"].replace("type=sha,prefix=sha-,format=short", "")

    assert pipeline.tag_problems(workflow) == [
        "job build does not tag type=sha,prefix=sha-,format=short"
    ]


def test_published_image_is_multi_platform_with_sbom_and_provenance(
    workflow: dict[str, Any],
) -> None:
    assert pipeline.publish_problems(workflow) == []


def test_publish_check_notices_a_single_platform_image(workflow: dict[str, Any]) -> None:
    _step(workflow, "publish", "docker/build-push-action")["with"]["platforms"] = "linux/amd64"

    assert pipeline.publish_problems(workflow) == [
        "the image is pushed for ['linux/amd64'], not ['linux/amd64', 'linux/arm64']"
    ]


def test_publish_check_notices_a_push_that_does_not_wait_for_the_scan(
    workflow: dict[str, Any],
) -> None:
    workflow["jobs"]["publish"]["needs"].remove("scan")

    assert pipeline.publish_problems(workflow) == [
        "the image is pushed without waiting for lint, test and scan"
    ]


def test_publish_check_notices_a_missing_sbom(workflow: dict[str, Any]) -> None:
    del _step(workflow, "publish", "docker/build-push-action")["with"]["sbom"]

    assert pipeline.publish_problems(workflow) == ["no SBOM is attached to the image"]


def test_fixed_high_or_critical_vulnerabilities_fail_the_scan(workflow: dict[str, Any]) -> None:
    assert pipeline.scan_problems(workflow) == []


def test_scan_check_notices_a_gate_that_never_fails(workflow: dict[str, Any]) -> None:
    for step in workflow["jobs"]["scan"]["steps"]:
        if str(step.get("uses", "")).startswith("aquasecurity/trivy-action@"):
            step["with"]["exit-code"] = "0"

    assert pipeline.scan_problems(workflow) == [
        "no Trivy step fails on fixed CRITICAL or HIGH vulnerabilities"
    ]


def test_scan_check_notices_the_sarif_upload_skipped_after_findings(
    workflow: dict[str, Any],
) -> None:
    _step(workflow, "scan", "github/codeql-action/upload-sarif")["if"] = "success()"

    assert pipeline.scan_problems(workflow) == [
        "the SARIF report is not uploaded whatever the scan found"
    ]
