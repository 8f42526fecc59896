"""The `branchloans` command: migrate creates and migrates, seed is idempotent, demo-data
loads in bulk."""

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command

from branchloans import __version__
from branchloans.cli import main
from branchloans.config import get_settings
from branchloans.migrate import alembic_config, asyncpg_dsn, drop_database, head_revision
from tests.support import throwaway_database_url, with_password


@pytest.fixture
def cli_database_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL set to a database that does not exist yet; dropped afterwards."""
    url = throwaway_database_url("cli")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("APP_ENV", "development")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    asyncio.run(drop_database(url))


async def _fetch(database_url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out == f"branchloans {__version__}\n"


def test_migrate_creates_the_database_and_brings_it_to_head(
    cli_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0

    rows = asyncio.run(_fetch(cli_database_url, "SELECT version_num FROM alembic_version"))
    assert [row[0] for row in rows] == [head_revision()]
    assert "created database" in capsys.readouterr().out


def test_migrate_twice_is_harmless(cli_database_url: str) -> None:
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0


def test_seed_inserts_the_five_demo_loans_once(
    cli_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["migrate"])

    assert main(["seed"]) == 0
    assert main(["seed"]) == 0

    output = capsys.readouterr().out
    assert "inserted 5 demo loan(s)" in output
    assert "inserted 0 demo loan(s)" in output
    rows = asyncio.run(
        _fetch(cli_database_url, "SELECT id::text, currency, status FROM loans ORDER BY id")
    )
    assert [tuple(row) for row in rows] == [
        ("00000000-0000-0000-0000-000000000001", "KES", "pending"),
        ("00000000-0000-0000-0000-000000000002", "INR", "approved"),
        ("00000000-0000-0000-0000-000000000003", "NGN", "rejected"),
        ("00000000-0000-0000-0000-000000000004", "VND", "disbursed"),
        ("00000000-0000-0000-0000-000000000005", "PHP", "repaid"),
    ]


def test_seeded_loans_have_one_event_and_paid_out_ones_a_disbursement_time(
    cli_database_url: str,
) -> None:
    main(["migrate"])
    main(["seed"])
    main(["seed"])

    rows = asyncio.run(
        _fetch(
            cli_database_url,
            "SELECT l.status, l.disbursed_at IS NOT NULL, count(e.id), min(e.to_status)"
            " FROM loans l JOIN loan_events e ON e.loan_id = l.id GROUP BY l.id ORDER BY l.id",
        )
    )
    assert [tuple(row) for row in rows] == [
        ("pending", False, 1, "pending"),
        ("approved", False, 1, "approved"),
        ("rejected", False, 1, "rejected"),
        ("disbursed", True, 1, "disbursed"),
        ("repaid", True, 1, "repaid"),
    ]


def test_seed_refuses_to_run_in_production(
    cli_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    # Production needs a password that is not a default one before anything else runs.
    monkeypatch.setenv("DATABASE_URL", with_password(cli_database_url))
    get_settings.cache_clear()

    assert main(["seed"]) == 2
    assert "production" in capsys.readouterr().err


def test_serve_rejects_an_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--bogus"])

    assert exit_info.value.code == 2


def test_purge_idempotency_keys_deletes_only_expired_ones(
    cli_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["migrate"])
    asyncio.run(
        _fetch(
            cli_database_url,
            "INSERT INTO idempotency_keys (scope, key, fingerprint, method, path, created_at,"
            " expires_at) VALUES ('', 'old', 'f', 'POST', '/', now() - interval '2 days',"
            " now() - interval '1 day'), ('', 'new', 'f', 'POST', '/', now(),"
            " now() + interval '1 day')",
        )
    )

    assert main(["purge-idempotency-keys"]) == 0

    assert "purged 1 expired idempotency key(s)" in capsys.readouterr().out
    rows = asyncio.run(_fetch(cli_database_url, "SELECT key FROM idempotency_keys"))
    assert [row[0] for row in rows] == ["new"]


TOTALS_MATCH_LOANS = """
SELECT NOT EXISTS (
    (SELECT status, currency, count(*), sum(amount) FROM loans GROUP BY 1, 2)
    EXCEPT ALL
    (SELECT status, currency, sum(loans), sum(amount) FROM loan_totals GROUP BY 1, 2
     HAVING sum(loans) <> 0)
) AND NOT EXISTS (
    (SELECT status, currency, sum(loans), sum(amount) FROM loan_totals GROUP BY 1, 2
     HAVING sum(loans) <> 0)
    EXCEPT ALL
    (SELECT status, currency, count(*), sum(amount) FROM loans GROUP BY 1, 2)
)
"""


def test_demo_data_loads_loans_each_with_one_event_and_exact_totals(
    cli_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["migrate"])

    assert main(["demo-data", "--count", "2000", "--seed", "7"]) == 0

    assert "inserted 2000 synthetic loan(s) with 2000 event(s)" in capsys.readouterr().out
    [row] = asyncio.run(
        _fetch(
            cli_database_url,
            "SELECT count(*), count(DISTINCT e.loan_id), bool_and(e.to_status = l.status),"
            " bool_and(e.from_status IS NULL AND e.occurred_at = l.updated_at),"
            " bool_and(l.version = 1), count(DISTINCT l.currency) > 3"
            " FROM loans l JOIN loan_events e ON e.loan_id = l.id",
        )
    )
    assert tuple(row) == (2000, 2000, True, True, True, True)
    assert asyncio.run(_fetch(cli_database_url, TOTALS_MATCH_LOANS))[0][0] is True


def test_demo_data_twice_adds_more_loans_and_keeps_totals_and_schema(
    cli_database_url: str,
) -> None:
    main(["migrate"])
    main(["demo-data", "--count", "1500", "--seed", "1"])

    # Smaller than the table this time: loaded with the indexes in place.
    assert main(["demo-data", "--count", "500", "--seed", "1"]) == 0

    counts = asyncio.run(
        _fetch(cli_database_url, "SELECT (SELECT count(*) FROM loans), count(*) FROM loan_events")
    )
    assert tuple(counts[0]) == (2000, 2000)
    assert asyncio.run(_fetch(cli_database_url, TOTALS_MATCH_LOANS))[0][0] is True
    command.check(alembic_config(cli_database_url))


def test_demo_data_refuses_to_run_in_production(
    cli_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    get_settings.cache_clear()

    assert main(["demo-data", "--count", "10"]) == 2
    assert "production" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "-5", "many"])
def test_demo_data_needs_a_positive_count(count: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-data", "--count", count])

    assert exit_info.value.code == 2
