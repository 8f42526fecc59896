"""podman, and compose.yaml's API services turned into `podman run` arguments.

There is no Compose here (and no Docker engine), so the services are translated key by key:
a key this module does not know fails the test, so that a change to compose.yaml is either
exercised here or consciously set aside (`NOT_APPLIED`).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import COMPOSE_FILE, interpolate

PODMAN = "podman"
REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "deploy" / "image" / "build"
# slirp4netns gives each container its own network (the API's port 8000 is its own, whoever
# else listens on the host's 8000) and lets it reach the host's loopback, where the test
# PostgreSQL listens, at this address; the services reach it under Compose's name, `db`.
NETWORK = "slirp4netns:allow_host_loopback=true"
HOST_LOOPBACK = "10.0.2.2"

# Keys whose effect is Compose's own (ordering, networks, restarts, builds, watch): the test
# starts the services in order and reaches them through their own network instead.
NOT_APPLIED = frozenset(
    {"image", "build", "depends_on", "networks", "restart", "develop", "container_name"}
)


def podman(*arguments: str, check: bool = True, timeout: float = 120) -> str:
    """Run podman; its stdout. A failure shows podman's stderr."""
    result = subprocess.run(
        [PODMAN, *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {shlex.join(arguments)}: {result.stderr}")
    return result.stdout


def rendered_services(values: Mapping[str, str]) -> dict[str, Any]:
    """compose.yaml's services, interpolated with `values` as `--env-file` would."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    services: dict[str, Any] = interpolate(document, dict(values), set())["services"]
    return services


def _seconds(duration: str) -> str:
    """A Compose duration ("30s", "1m30s") in whole seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    if not parts or "".join(number + unit for number, unit in parts) != duration:
        raise ValueError(f"unsupported duration {duration!r}")
    return str(sum(int(number) * units[unit] for number, unit in parts))


def _healthcheck(check: Mapping[str, Any]) -> list[str]:
    if check.get("disable"):
        return ["--no-healthcheck"]
    kind, *command = check["test"]
    if kind != "CMD":
        raise ValueError(f"unsupported healthcheck test {kind}")
    # Without systemd podman cannot time the checks (`podman healthcheck run` still runs one).
    arguments = ["--health-cmd", json.dumps(command), "--health-interval", "disable"]
    if "timeout" in check:
        arguments += ["--health-timeout", check["timeout"]]
    if "retries" in check:
        arguments += ["--health-retries", str(check["retries"])]
    if "start_period" in check:
        arguments += ["--health-start-period", check["start_period"]]
    return arguments


def run_arguments(service: Mapping[str, Any], volumes: Mapping[str, str]) -> list[str]:
    """`podman run` options (not the image, not the command) that do what `service` declares.

    `volumes` maps the compose file's volume names to the test's own volumes.
    """
    arguments: list[str] = []
    for key, value in service.items():
        if key in NOT_APPLIED or key in ("command", "entrypoint"):
            continue
        if key == "environment":
            for name, setting in value.items():
                arguments += ["--env", f"{name}={setting}"]
        elif key == "user":
            arguments += ["--user", str(value)]
        elif key == "read_only":
            if str(value).lower() == "true":
                # Docker's read-only: only the declared tmpfs mounts are writable, unlike
                # podman's default, which adds its own on /tmp, /var/tmp and /run.
                arguments += ["--read-only", "--read-only-tmpfs=false"]
        elif key == "tmpfs":
            for path in value:
                arguments += ["--tmpfs", path]
        elif key == "cap_drop":
            arguments += [argument for cap in value for argument in ("--cap-drop", cap)]
        elif key == "security_opt":
            arguments += [argument for opt in value for argument in ("--security-opt", opt)]
        elif key == "deploy":
            limits = value["resources"]["limits"]
            arguments += ["--cpus", str(limits["cpus"]), "--memory", limits["memory"]]
        elif key == "stop_grace_period":
            arguments += ["--stop-timeout", _seconds(value)]
        elif key == "healthcheck":
            arguments += _healthcheck(value)
        elif key == "network_mode":
            arguments += ["--network", value]
        elif key == "volumes":
            for mount in value:
                name, _, target = mount.partition(":")
                arguments += ["--volume", f"{volumes[name]}:{target}"]
        else:
            raise ValueError(f"compose key {key!r} is not translated: handle it in {__name__}")
    if "network_mode" not in service:
        arguments += ["--network", NETWORK, "--add-host", f"db:{HOST_LOOPBACK}"]
    if "entrypoint" in service:
        arguments += ["--entrypoint", json.dumps(service["entrypoint"])]
    return arguments


def command_of(service: Mapping[str, Any]) -> list[str]:
    """The service's command as arguments (Compose splits a string like a shell)."""
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def run_service(
    name: str,
    service: Mapping[str, Any],
    volumes: Mapping[str, str],
    *extra: str,
    detach: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Start `service` as container `name`; to completion unless `detach`."""
    arguments = [
        "run",
        "--name",
        name,
        *(["--detach"] if detach else []),
        *run_arguments(service, volumes),
        *extra,
        service["image"],
        *command_of(service),
    ]
    return subprocess.run(
        [PODMAN, *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )


def remove_container(name: str) -> None:
    podman("rm", "--force", "--time", "0", name, check=False)


def require_rootful_podman() -> None:
    """Skip when podman cannot run these containers here; fail when it should but is missing."""
    if os.geteuid() != 0:
        pytest.skip("the container tests run rootful podman: run them as root (.ci/run does)")
    if shutil.which(PODMAN) is None:
        pytest.fail("podman is missing: apt-get install podman (.ci/install-apt-packages does)")
