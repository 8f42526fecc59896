"""What the runtime image holds, and what it says about itself."""

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.engine import REPO, podman

# Set from the first measurement: 263 MB on the local stand-in bases (Debian's python3 in a
# debootstrap minbase, 156 MB, larger than python:3.11-slim's ~125 MB), ~10 % headroom.
SIZE_BUDGET_MB = 290
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "ld", "make")


def _project_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


@pytest.fixture(scope="module")
def image_root(runtime_image: str) -> Iterator[Path]:
    """The runtime image's files, mounted read-only on the host."""
    root = Path(podman("image", "mount", runtime_image).strip())
    yield root
    podman("image", "unmount", runtime_image, check=False)


def _labels(image: str) -> dict[str, str]:
    labels: dict[str, str] = json.loads(
        podman("image", "inspect", "--format", "{{json .Labels}}", image)
    )
    return labels


def _environment(image: str) -> list[str]:
    environment: list[str] = json.loads(
        podman("image", "inspect", "--format", "{{json .Config.Env}}", image)
    )
    return environment


def test_the_image_has_no_compiler(image_root: Path) -> None:
    directories = ("usr/bin", "usr/local/bin", "bin", "app/.venv/bin")
    found = [
        f"/{d}/{tool}"
        for d in directories
        for tool in COMPILERS
        if (image_root / d / tool).exists()
    ]

    assert found == []


def test_the_image_has_no_uv(image_root: Path) -> None:
    found = [
        str(Path(directory, name).relative_to(image_root))
        for directory, _, names in os.walk(image_root)
        for name in names
        if name in ("uv", "uvx")
    ]

    assert found == []


def test_the_app_directory_holds_only_the_code_its_migrations_and_the_virtualenv(
    image_root: Path,
) -> None:
    # No .git, no tests, no development files: the .dockerignore lets in only what runs.
    assert sorted(path.name for path in (image_root / "app").iterdir()) == [
        ".venv",
        "alembic.ini",
        "migrations",
        "src",
    ]
    assert not list(image_root.glob("app/**/.git"))


def test_the_image_has_no_test_or_development_tools(image_root: Path) -> None:
    site_packages = next((image_root / "app/.venv/lib").glob("python3*/site-packages"))
    installed = {path.name.lower() for path in site_packages.iterdir()}

    assert not installed & {"pytest", "_pytest", "mypy", "ruff", "hypothesis", "tests"}


def test_the_image_stays_within_its_size_budget(runtime_image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", runtime_image))
    print(f"\nruntime image: {size / 1e6:.0f} MB (budget {SIZE_BUDGET_MB} MB)")  # noqa: T201

    assert size < SIZE_BUDGET_MB * 1_000_000


def test_version_inside_matches_the_package_version(runtime_image: str) -> None:
    result = subprocess.run(
        ["podman", "run", "--rm", runtime_image, "--version"],
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout == f"branchloans {_project_version()}\n"


def test_the_oci_labels_name_the_version_and_revision(runtime_image: str) -> None:
    labels = _labels(runtime_image)
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()

    assert labels["org.opencontainers.image.title"] == "branch-loans-api"
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.version"] == _project_version()
    assert labels["org.opencontainers.image.revision"] == revision
    assert f"APP_REVISION={revision}" in _environment(runtime_image)
