"""Retire loan_status_counts: loans per status now come from loan_totals.

Revision 0005 counted loans per status for /metrics; 0006 added loan_totals, which counts
per status and currency for the statistics. Both were kept by triggers on every write to
`loans`; one set of triggers is enough. The downgrade rebuilds 0005's table, triggers and
counts with 0005's own code.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _revision_0005() -> ModuleType:
    path = Path(__file__).with_name("0005_loan_status_counts.py")
    spec = importlib.util.spec_from_file_location("revision_0005", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    _revision_0005().downgrade()


def downgrade() -> None:
    _revision_0005().upgrade()
