"""The restore drill, run for real: throwaway clusters, pgBackRest with the stack's
configuration, the API on each side of a point-in-time restore."""

import re
import shutil
from collections.abc import Iterator

import pytest

from ops.restore_drill import Acknowledged, DrillReport, RestoreDrill

# Small enough to keep the suite quick; a short archive_timeout so that the segment holding
# the last write is archived in a second rather than in the stack's 30 s.
LOANS = 10


@pytest.fixture(scope="module")
def drill() -> Iterator[tuple[RestoreDrill, DrillReport]]:
    """One drill for the module, its restored cluster left running for more checks."""
    assert shutil.which("pgbackrest"), "pgbackrest is missing: bash .ci/install-apt-packages"
    with RestoreDrill(loans=LOANS, archive_timeout="1s") as restore_drill:
        report = restore_drill.run()
        print(report.line())  # noqa: T201 - the figures, as `make restore-drill` prints them
        yield restore_drill, report


def test_every_loan_acknowledged_before_the_target_is_restored_unchanged(
    drill: tuple[RestoreDrill, DrillReport],
) -> None:
    _, report = drill

    assert report.problems == ()
    assert report.restored == report.acknowledged == LOANS


def test_nothing_acknowledged_after_the_target_is_restored(
    drill: tuple[RestoreDrill, DrillReport],
) -> None:
    restore_drill, _ = drill
    created_after = restore_drill.after.loans.keys() - restore_drill.before.loans.keys()
    approved_after = restore_drill.after.loans.keys() & restore_drill.before.loans.keys()
    assert restore_drill.restored is not None

    with restore_drill.serving(restore_drill.restored) as api:
        assert created_after
        for loan_id in created_after:
            assert api.get(f"/api/loans/{loan_id}").status_code == 404
        assert approved_after
        for loan_id in approved_after:
            assert api.get(f"/api/loans/{loan_id}").json()["status"] == "pending"


def test_the_checks_fail_when_the_writes_after_the_target_are_expected(
    drill: tuple[RestoreDrill, DrillReport],
) -> None:
    restore_drill, _ = drill
    assert restore_drill.restored is not None
    expected = Acknowledged(
        loans={**restore_drill.before.loans, **restore_drill.after.loans},
        events=restore_drill.before.events,
    )

    with restore_drill.serving(restore_drill.restored) as api:
        problems = restore_drill.verify(api, restore_drill.restored, expected, Acknowledged())

    missing = [p for p in problems if "restored None" in p]
    changed = [p for p in problems if "'status': 'approved'" in p and "'status': 'pending'" in p]
    assert len(missing) == len(restore_drill.after.loans.keys() - restore_drill.before.loans)
    assert changed


def test_every_answer_before_the_target_arrived_before_it_and_every_other_after(
    drill: tuple[RestoreDrill, DrillReport],
) -> None:
    restore_drill, report = drill

    assert max(restore_drill.before.at.values()) < report.target
    assert min(restore_drill.after.at.values()) > report.target


def test_the_report_says_what_was_restored_at_which_time_and_how_fast(
    drill: tuple[RestoreDrill, DrillReport],
) -> None:
    _, report = drill

    assert re.fullmatch(
        rf"restored {LOANS}/{LOANS} acknowledged loans at \S+; RPO \d+\.\d s;"
        r" RTO \d+\.\d s for \d+ loans",
        report.line(),
    )
    assert report.loans_in_database == LOANS
