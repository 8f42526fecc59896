"""`make audit`: pip-audit on the locked dependencies, judged against audit-allowlist.toml.

pip-audit finds the vulnerabilities; what is ours is the policy, written here by hand: a
finding with a fixed version fails the run unless the allowlist accepts it with a reason until
an expiry date; an expired entry fails the run too; a finding without a fix is only reported;
and a dependency that could not be looked up fails the run, so an audit that checked nothing
never passes as clean.
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = ROOT / "audit-allowlist.toml"


@dataclass(frozen=True)
class Accepted:
    """An allowlisted finding: which vulnerability, of which package, why, and until when."""

    id: str
    package: str
    reason: str
    expires: dt.date


@dataclass
class Verdict:
    """What the run reports: failures and unaudited dependencies end it non-zero, notes are
    only printed."""

    failures: list[str]
    notes: list[str]
    audited: int
    unaudited: list[str]


def load_allowlist(path: Path) -> list[Accepted]:
    """Read the allowlist; every entry must carry an id, a package, a reason and a date."""
    entries = tomllib.loads(path.read_text()).get("accepted", [])
    accepted = []
    for entry in entries:
        missing = {"id", "package", "reason", "expires"} - entry.keys()
        if missing:
            raise ValueError(f"{path.name}: entry {entry} lacks {', '.join(sorted(missing))}")
        if not isinstance(entry["expires"], dt.date) or not str(entry["reason"]).strip():
            raise ValueError(f"{path.name}: {entry['id']} needs a reason and a TOML date")
        accepted.append(
            Accepted(entry["id"], entry["package"], entry["reason"].strip(), entry["expires"])
        )
    return accepted


def judge(report: dict[str, Any], allowlist: list[Accepted], today: dt.date) -> Verdict:
    """Apply the policy to pip-audit's JSON report."""
    failures: list[str] = []
    notes: list[str] = []
    unaudited = [dep for dep in report["dependencies"] if "skip_reason" in dep]
    for entry in allowlist:
        if entry.expires < today:
            failures.append(f"allowlist entry {entry.id} ({entry.package}) expired {entry.expires}")
    current = {(entry.id, entry.package.lower()) for entry in allowlist if entry.expires >= today}
    for dependency in report["dependencies"]:
        for vuln in dependency.get("vulns", []):
            ids = {vuln["id"], *vuln.get("aliases", [])}
            finding = f"{dependency['name']} {dependency['version']}: {vuln['id']}"
            if any((id_, dependency["name"].lower()) in current for id_ in ids):
                notes.append(f"{finding} accepted in the allowlist")
            elif vuln.get("fix_versions"):
                fixes = ", ".join(vuln["fix_versions"])
                failures.append(f"{finding} is fixed in {fixes}: upgrade it")
            else:
                notes.append(f"{finding} has no fixed version yet")
    return Verdict(
        failures,
        notes,
        audited=len(report["dependencies"]) - len(unaudited),
        unaudited=[f"{dep['name']}: {dep['skip_reason']}" for dep in unaudited],
    )


def run_pip_audit(workdir: Path) -> dict[str, Any]:
    """Export the lock (every group, with hashes) and audit it without installing anything."""
    requirements = workdir / "requirements.txt"
    subprocess.run(
        ["uv", "export", "--locked", "--all-groups", "--no-emit-project", "--quiet",
         "--format", "requirements-txt", "--output-file", requirements],
        cwd=ROOT, check=True,
    )  # fmt: skip
    output = workdir / "audit.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--requirement", requirements, "--disable-pip",
         "--format", "json", "--output", output, "--progress-spinner", "off"],
        check=False,
    )  # fmt: skip
    if not output.exists():
        raise SystemExit(f"pip-audit wrote no report (exit {result.returncode})")
    report: dict[str, Any] = json.loads(output.read_text())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tolerate-unreachable",
        action="store_true",
        help="exit 0 with a warning when no dependency at all could be looked up "
        "(a machine whose network answers no vulnerability query)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        report = run_pip_audit(Path(workdir))
    verdict = judge(report, load_allowlist(ALLOWLIST), dt.datetime.now(dt.UTC).date())
    for line in verdict.notes:
        print(f"note: {line}")
    print(f"audited {verdict.audited} locked dependencies, {len(verdict.unaudited)} not")
    failures = verdict.failures
    if args.tolerate_unreachable and verdict.audited == 0 and verdict.unaudited:
        print("WARNING: the vulnerability service answered no query here: nothing was audited")
    elif verdict.unaudited:
        failures.append(f"{len(verdict.unaudited)} not audited, e.g. {verdict.unaudited[0]}")
    for line in failures:
        print(f"FAIL: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
