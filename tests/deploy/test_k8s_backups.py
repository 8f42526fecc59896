"""The CloudNativePG cluster's continuous backup: the Barman Cloud plugin archives its WAL to
an ObjectStore and a ScheduledBackup takes base backups; production cannot render without."""

import pytest

from tests.deploy.kube import find, one, render

PLUGIN = "barman-cloud.cloudnative-pg.io"
BACKED_UP = ("staging", "prod")


@pytest.mark.parametrize("overlay", BACKED_UP)
def test_the_plugin_archives_the_clusters_wal_to_the_object_store(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    cluster = one(manifests, "Cluster", "branch-loans-db")
    store = one(manifests, "ObjectStore")

    (plugin,) = cluster["spec"]["plugins"]
    assert plugin["name"] == PLUGIN
    assert plugin["isWALArchiver"] is True
    assert plugin["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    assert "backup" not in cluster["spec"]  # the deprecated in-tree barmanObjectStore


@pytest.mark.parametrize("overlay", BACKED_UP)
def test_at_most_a_minute_of_writes_waits_for_archiving(overlay: str) -> None:
    cluster = one(render(f"overlays/{overlay}"), "Cluster", "branch-loans-db")
    timeout = cluster["spec"]["postgresql"]["parameters"]["archive_timeout"]

    assert timeout.endswith("s")
    assert int(timeout.removesuffix("s")) <= 60


@pytest.mark.parametrize("overlay", BACKED_UP)
def test_a_scheduled_backup_runs_daily_through_the_plugin(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    backup = one(manifests, "ScheduledBackup")
    cluster = one(manifests, "Cluster")
    seconds, minutes, hours, *every_day = backup["spec"]["schedule"].split()

    assert backup["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert backup["spec"]["method"] == "plugin"
    assert backup["spec"]["pluginConfiguration"]["name"] == PLUGIN
    assert (seconds, minutes) == ("0", "0")
    assert hours.isdigit()
    assert every_day == ["*", "*", "*"]


def test_each_environment_backs_up_under_its_own_prefix() -> None:
    paths = [
        one(render(f"overlays/{overlay}"), "ObjectStore")["spec"]["configuration"][
            "destinationPath"
        ]
        for overlay in BACKED_UP
    ]

    assert len(set(paths)) == len(paths)
    assert all(
        path.rstrip("/").endswith(overlay) for path, overlay in zip(paths, BACKED_UP, strict=True)
    )


def test_the_object_store_credentials_come_from_a_secret_never_committed() -> None:
    store = one(render("overlays/prod"), "ObjectStore")
    credentials = store["spec"]["configuration"]["s3Credentials"]

    assert {ref["name"] for ref in credentials.values()} == {"branch-loans-backup-s3"}
    assert not find(render("overlays/prod"), "Secret")
