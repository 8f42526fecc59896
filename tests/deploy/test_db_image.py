"""The db image (deploy/db): pgBackRest archiving and the backup schedule, the schedule run
for real against a throwaway cluster."""

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.restore_drill import RestoreDrill
from ops.throwaway_cluster import Cluster, as_postgres
from tests.deploy.support import REPO, require

DB_DIR = REPO / "deploy" / "db"
CONTAINERFILE = DB_DIR / "Containerfile"


def _settings(path: Path) -> dict[str, str]:
    """`name = value` lines of a postgresql.conf file, quotes removed."""
    settings = {}
    for line in path.read_text().splitlines():
        if match := re.fullmatch(r"\s*(\w+)\s*=\s*'?(.*?)'?\s*", line.split("#")[0]):
            settings[match[1]] = match[2]
    return settings


def test_hadolint_finds_nothing_in_the_db_image() -> None:
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    result = subprocess.run(
        [hadolint, "--no-color", CONTAINERFILE], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_the_configuration_the_drill_uses() -> None:
    text = CONTAINERFILE.read_text()

    assert "COPY pgbackrest.conf /etc/pgbackrest/pgbackrest.conf" in text
    assert "COPY archiving.conf /etc/postgresql/archiving.conf" in text
    assert "include '/etc/postgresql/archiving.conf'" in text
    assert "/usr/share/postgresql/postgresql.conf.sample" in text


def test_archiving_loses_at_most_a_minute_of_acknowledged_writes() -> None:
    settings = _settings(DB_DIR / "archiving.conf")
    timeout = re.fullmatch(r"(\d+)(s|min)", settings["archive_timeout"])

    assert settings["archive_mode"] == "on"
    assert settings["wal_level"] == "replica"
    assert settings["archive_command"] == "pgbackrest --stanza=branchloans archive-push %p"
    assert timeout is not None
    assert int(timeout[1]) * (60 if timeout[2] == "min" else 1) <= 60


def test_the_backup_service_shares_the_databases_volumes_and_settings(
    rendered: dict[str, Any],
) -> None:
    db, backup = rendered["services"]["db"], rendered["services"]["backup"]

    assert backup["image"] == db["image"]
    assert backup["command"] == ["backup-schedule"]
    assert backup["user"] == "postgres"
    assert backup["env_file"] == db["env_file"]
    assert set(backup["volumes"]) == set(db["volumes"])


@pytest.fixture(scope="module")
def archiving_cluster() -> Iterator[tuple[RestoreDrill, Cluster]]:
    """A throwaway cluster archiving with the image's configuration."""
    require("pgbackrest", "pgbackrest")
    with RestoreDrill(loans=0) as drill:
        cluster = drill.cluster("scheduled")
        cluster.initdb()
        cluster.include(drill.work / "archiving.conf")
        cluster.start()
        yield drill, cluster


def _schedule(cluster: Cluster, **intervals: str) -> None:
    env = {
        **os.environ,
        **cluster.env,
        "PGHOST": str(cluster.socket_dir),
        "PGPORT": str(cluster.port),
        "PGUSER": "postgres",
        **intervals,
    }
    result = subprocess.run(
        as_postgres(["sh", str(DB_DIR / "backup-schedule.sh"), "--once"]),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _backup_types(drill: RestoreDrill, cluster: Cluster) -> list[str]:
    info = json.loads(drill.pgbackrest(cluster, "--output=json", "info"))
    return [backup["type"] for backup in info[0]["backup"]]


def test_the_schedule_takes_a_full_backup_then_differentials_when_they_are_due(
    archiving_cluster: tuple[RestoreDrill, Cluster],
) -> None:
    drill, cluster = archiving_cluster

    _schedule(cluster)
    assert _backup_types(drill, cluster) == ["full"]
    _schedule(cluster)
    assert _backup_types(drill, cluster) == ["full"]
    _schedule(cluster, BACKUP_DIFF_EVERY="0")
    assert _backup_types(drill, cluster) == ["full", "diff"]


def test_the_default_repository_settings_file_exists_and_sets_nothing(
    rendered: dict[str, Any],
) -> None:
    for name in ("db", "backup", "pgbackrest-exporter"):
        env_file = rendered["services"][name]["env_file"]
        path = REPO / env_file
        lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]

        assert lines == [], f"{env_file}: an empty setting stops pgBackRest"
