"""`make audit`'s policy on pip-audit's JSON report: fixed findings fail unless accepted until
an expiry date, unfixed ones are reported, and nothing passes unaudited."""

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tools import dependency_audit
from tools.dependency_audit import Accepted, judge, load_allowlist

TODAY = dt.date(2026, 11, 27)


def _report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


def _vulnerable(fix_versions: list[str]) -> dict[str, Any]:
    return {
        "name": "Jinja2",
        "version": "3.1.2",
        "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": fix_versions, "aliases": []}],
    }


def test_a_clean_report_passes() -> None:
    verdict = judge(_report({"name": "fastapi", "version": "0.1", "vulns": []}), [], TODAY)

    assert (verdict.failures, verdict.audited, verdict.unaudited) == ([], 1, [])


def test_a_vulnerability_with_a_fixed_version_fails() -> None:
    verdict = judge(_report(_vulnerable(["3.1.3"])), [], TODAY)

    assert verdict.failures == ["Jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 is fixed in 3.1.3: upgrade it"]


def test_a_vulnerability_without_a_fix_is_reported_only() -> None:
    verdict = judge(_report(_vulnerable([])), [], TODAY)

    assert verdict.failures == []
    assert verdict.notes == ["Jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 has no fixed version yet"]


def test_an_allowlisted_finding_passes_until_it_expires() -> None:
    accepted = Accepted("GHSA-h5c8-rqwp-cp95", "jinja2", "templates are ours", TODAY)

    assert judge(_report(_vulnerable(["3.1.3"])), [accepted], TODAY).failures == []


def test_an_expired_allowlist_entry_fails() -> None:
    accepted = Accepted("GHSA-h5c8-rqwp-cp95", "jinja2", "templates are ours", TODAY)

    verdict = judge(_report(_vulnerable(["3.1.3"])), [accepted], TODAY + dt.timedelta(days=1))

    assert verdict.failures == [
        "allowlist entry GHSA-h5c8-rqwp-cp95 (jinja2) expired 2026-11-27",
        "Jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 is fixed in 3.1.3: upgrade it",
    ]


def test_a_dependency_that_could_not_be_looked_up_is_counted_unaudited() -> None:
    verdict = judge(_report({"name": "alembic", "skip_reason": "not found"}), [], TODAY)

    assert (verdict.audited, verdict.unaudited) == (0, ["alembic: not found"])


def test_the_committed_allowlist_parses() -> None:
    assert isinstance(load_allowlist(dependency_audit.ALLOWLIST), list)


def test_an_allowlist_entry_without_reason_or_expiry_is_refused(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist.toml"
    allowlist.write_text('[[accepted]]\nid = "GHSA-1"\npackage = "x"\n')

    with pytest.raises(ValueError, match="lacks expires, reason"):
        load_allowlist(allowlist)
