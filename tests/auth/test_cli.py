"""`branchloans api-keys`: create prints the key once, list never shows it, revoke ends it."""

import uuid
from collections.abc import Iterator

import pytest

from branchloans.cli import main
from branchloans.config import get_settings


@pytest.fixture
def name(monkeypatch: pytest.MonkeyPatch, committed_database_url: str) -> Iterator[str]:
    """DATABASE_URL aimed at a migrated database, and a key name nobody used yet."""
    monkeypatch.setenv("DATABASE_URL", committed_database_url)
    get_settings.cache_clear()
    yield f"cli-{uuid.uuid4().hex[:8]}"
    get_settings.cache_clear()


def test_create_prints_the_key_once_and_list_shows_only_its_prefix(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["api-keys", "create", "--name", name, "--scopes", "loans:read"]) == 0
    key = capsys.readouterr().out.strip()

    assert main(["api-keys", "list"]) == 0
    listing = capsys.readouterr().out

    assert key.startswith("blk_")
    assert name in listing
    assert "loans:read" in listing
    assert key not in listing
    assert key.split("_")[1] in listing


def test_revoke_ends_a_key_and_a_second_revoke_says_so(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["api-keys", "create", "--name", name, "--scopes", "loans:read"])

    assert main(["api-keys", "revoke", name]) == 0
    assert main(["api-keys", "revoke", name]) == 1
    main(["api-keys", "list"])
    assert "revoked" in capsys.readouterr().out


def test_unknown_scope_is_refused_with_the_known_ones(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["api-keys", "create", "--name", name, "--scopes", "loans:read,loans:delete"]) == 2

    error = capsys.readouterr().err
    assert "loans:delete" in error
    assert "loans:manage" in error


def test_duplicate_name_is_refused(name: str) -> None:
    main(["api-keys", "create", "--name", name, "--scopes", "loans:read"])

    assert main(["api-keys", "create", "--name", name, "--scopes", "loans:read"]) == 1


@pytest.mark.parametrize("bad", ["a\x00b", "a\x1bb", "x" * 101])
def test_create_refuses_a_name_postgres_cannot_store_or_nobody_can_read(
    name: str, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["api-keys", "create", "--name", bad, "--scopes", "loans:read"])
    assert exited.value.code == 2
    assert "key name" in capsys.readouterr().err
