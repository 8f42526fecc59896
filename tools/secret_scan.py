"""detect-secrets over every file version in the git history (`make secrets`), or over the
files pre-commit names (the staged ones).

detect-secrets finds secrets in files but has no history mode, so this walks it, by hand:
every blob any commit ever held is scanned once, under its own file name, with the plugins and
filters of the reviewed baseline. A finding passes only when the baseline holds the same secret
marked `"is_secret": false` (a throwaway someone reviewed with `detect-secrets audit`). Secrets
are matched by hash, not by line, so editing a file around a reviewed throwaway needs no new
baseline (detect-secrets' own hook would ask for one).
"""

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from detect_secrets.core import baseline
from detect_secrets.core.secrets_collection import SecretsCollection

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ".secrets.baseline"


@dataclass(frozen=True, order=True)
class Finding:
    """A secret the baseline does not clear, and where history first showed it."""

    path: str
    line: int
    kind: str


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def _history_blobs(repo: Path) -> dict[str, str]:
    """Each blob of every commit behind HEAD, with one path it had."""
    blobs: dict[str, str] = {}
    listing = _git(repo, "rev-list", "--objects", "HEAD")
    objects = [line.split(" ", 1) for line in listing.splitlines() if " " in line]
    kinds = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objecttype) %(objectname)"],
        cwd=repo,
        input="\n".join(sha for sha, _ in objects),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    blob_ids = {sha for kind, sha in zip(kinds[::2], kinds[1::2], strict=True) if kind == "blob"}
    for sha, path in objects:
        if sha in blob_ids:
            blobs.setdefault(sha, path)
    return blobs


def cleared_hashes(repo: Path) -> set[str]:
    """The secrets the reviewed baseline marks as not secret; loading it also applies its
    plugin and filter settings to the scans that follow."""
    reviewed = baseline.load(baseline.load_from_file(str(repo / BASELINE)), BASELINE)
    return {secret.secret_hash for _, secret in reviewed if secret.is_secret is False}


def scan_history(repo: Path) -> list[Finding]:
    """Every secret in any file version of the history that the baseline does not clear."""
    cleared = cleared_hashes(repo)
    findings: set[Finding] = set()
    with tempfile.TemporaryDirectory() as workdir:
        files: dict[str, str] = {}
        for sha, path in _history_blobs(repo).items():
            copy = Path(workdir, sha, path)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(
                subprocess.run(
                    ["git", "cat-file", "blob", sha], cwd=repo, capture_output=True, check=True
                ).stdout
            )
            files[f"{sha}/{path}"] = path
        secrets = SecretsCollection(root=workdir)
        secrets.scan_files(*files)
        for filename, secret in secrets:
            if secret.secret_hash not in cleared:
                findings.add(Finding(files[filename], secret.line_number, secret.type))
    return sorted(findings)


def scan_files(repo: Path, paths: list[str]) -> list[Finding]:
    """Every secret in these files (relative to `repo`) that the baseline does not clear."""
    cleared = cleared_hashes(repo)
    secrets = SecretsCollection(root=str(repo))
    secrets.scan_files(*paths)
    return sorted(
        Finding(filename, secret.line_number, secret.type)
        for filename, secret in secrets
        if secret.secret_hash not in cleared
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="*", help="scan these files (pre-commit's staged ones), not the history"
    )
    args = parser.parse_args(argv)
    if args.files:
        findings = scan_files(Path.cwd(), args.files)
        scanned = f"{len(args.files)} files"
    else:
        findings = scan_history(Path.cwd())
        scanned = f"{_git(Path.cwd(), 'rev-list', '--count', 'HEAD').strip()} commits"
    for finding in findings:
        print(f"{finding.path}:{finding.line}: {finding.kind}", file=sys.stderr)
    print(f"scanned {scanned}: {len(findings)} secrets the baseline does not clear")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
