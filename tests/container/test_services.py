"""compose.yaml's certs, migrate and api services, run from the image as production declares
them, against a throwaway database."""

import asyncio
import json
import subprocess

import asyncpg
import httpx

from branchloans.migrate import asyncpg_dsn, head_revision
from tests.container.conftest import RunningApi, Stack
from tests.container.engine import podman
from tests.support import SERVER_URL

LOAN = {"borrower_id": "usr_container", "amount": 250, "currency": "KES"}


def _volume_files(volume: str) -> set[str]:
    mountpoint = podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).strip()
    listing = subprocess.run(["ls", "-A", mountpoint], capture_output=True, text=True, check=True)
    return set(listing.stdout.split())


async def _fetch(database: str, query: str) -> list[asyncpg.Record]:
    url = SERVER_URL.rsplit("/", 1)[0] + f"/{database}"
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


def test_certs_writes_the_server_certificate_and_keeps_the_ca_key_apart(
    stack: Stack, certs_run: subprocess.CompletedProcess[str]
) -> None:
    assert certs_run.returncode == 0, certs_run.stderr
    assert {"server.crt", "server.key", "ca.crt"} <= _volume_files(stack.volumes["certs"])
    assert "ca.key" not in _volume_files(stack.volumes["certs"])
    assert "ca.key" in _volume_files(stack.volumes["ca"])


def test_migrate_brings_the_empty_database_to_head(
    stack: Stack, migrate_run: subprocess.CompletedProcess[str]
) -> None:
    assert migrate_run.returncode == 0, migrate_run.stderr
    rows = asyncio.run(_fetch(stack.database, "SELECT version_num FROM alembic_version"))

    assert [row["version_num"] for row in rows] == [head_revision()]


def test_migrate_creates_the_api_role(
    stack: Stack, migrate_run: subprocess.CompletedProcess[str]
) -> None:
    assert migrate_run.returncode == 0, migrate_run.stderr
    query = f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{stack.app_role}'"
    rows = asyncio.run(_fetch(stack.database, query))

    assert [row["rolcanlogin"] for row in rows] == [True]


def test_api_answers_health_and_readiness(api: RunningApi) -> None:
    health = httpx.get(f"{api.url}/health", timeout=5)
    readiness = httpx.get(f"{api.url}/readiness", timeout=5)

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert readiness.status_code == 200


def test_api_in_production_refuses_a_loan_without_a_key(api: RunningApi) -> None:
    response = httpx.post(f"{api.url}/api/loans", json=LOAN, timeout=5)

    assert response.status_code == 401


def test_api_accepts_a_loan_with_a_key_created_in_the_container(
    api: RunningApi, api_key: str
) -> None:
    response = httpx.post(
        f"{api.url}/api/loans",
        json=LOAN,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=5,
    )

    assert response.status_code == 201, response.text
    assert response.json()["borrower_id"] == LOAN["borrower_id"]


def test_api_runs_as_uid_10001_without_capabilities(api: RunningApi) -> None:
    status = podman("exec", api.name, "cat", "/proc/1/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)

    assert fields["Uid"].split()[0] == "10001"
    assert fields["Gid"].split()[0] == "10001"
    assert {fields[name].strip() for name in ("CapPrm", "CapEff", "CapBnd", "CapAmb")} == {
        "0000000000000000"
    }
    assert fields["NoNewPrivs"].strip() == "1"


def test_the_app_directory_is_read_only(api: RunningApi) -> None:
    result = subprocess.run(
        ["podman", "exec", api.name, "touch", "/app/written"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_tmp_is_writable(api: RunningApi) -> None:
    podman("exec", api.name, "sh", "-c", "echo kept > /tmp/written")

    assert podman("exec", api.name, "cat", "/tmp/written") == "kept\n"


def test_the_healthcheck_passes(api: RunningApi) -> None:
    result = subprocess.run(
        ["podman", "healthcheck", "run", api.name], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_images_own_healthcheck(stack: Stack) -> None:
    image = podman("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", stack.image)

    assert json.loads(image) == stack.services()["api"]["healthcheck"]["test"]


def _cgroup_limits(container: str) -> tuple[int, float]:
    """The container's memory limit in bytes and CPU limit in CPUs, from its own cgroup."""
    script = (
        "if [ -f /sys/fs/cgroup/memory.max ]; then cat /sys/fs/cgroup/memory.max "
        "/sys/fs/cgroup/cpu.max; else cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; fi"
    )
    memory, *cpu = podman("exec", container, "sh", "-c", script).split()
    quota, period = (int(value) for value in cpu)
    return int(memory), quota / period


def test_api_runs_within_the_declared_resource_limits(stack: Stack, api: RunningApi) -> None:
    declared = stack.services()["api"]["deploy"]["resources"]["limits"]
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    memory, cpus = _cgroup_limits(api.name)

    assert memory == int(declared["memory"][:-1]) * units[declared["memory"][-1]]
    assert cpus == float(declared["cpus"])
