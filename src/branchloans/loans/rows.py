"""Loans as the service reads them: typed rows, serialised as they are."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict, cast

from branchloans.currencies import in_minor_units
from branchloans.loans.models import Loan, LoanStatus

# A plain lookup: calling the enum class per value would cost a list page measurably.
_STATUS = {status.value: status for status in LoanStatus}


class LoanRow(TypedDict):
    """A loan as the API shows it: `LoanRead`'s fields. A dict, because orjson writes a list
    page of dicts about a third faster than of dataclasses (bench/RESULTS.md)."""

    id: uuid.UUID
    borrower_id: str
    amount: Decimal
    currency: str
    status: LoanStatus
    term_months: int | None
    interest_rate_apr: Decimal | None
    created_at: datetime
    updated_at: datetime
    disbursed_at: datetime | None


_FIELDS = tuple(LoanRow.__annotations__)
# What the API shows of a loan, in LoanRow's order.
LOAN_COLUMNS = tuple(getattr(Loan, field) for field in _FIELDS)


def loan_row(record: Sequence[Any]) -> LoanRow:
    """The loan in a row whose first columns are `LOAN_COLUMNS`."""
    row: dict[str, Any] = dict(zip(_FIELDS, record, strict=False))
    row["status"] = _STATUS[row["status"]]
    row["amount"] = in_minor_units(row["amount"], row["currency"])
    return cast(LoanRow, row)


@dataclass(frozen=True, slots=True)
class VersionedLoan:
    """A loan and its version, which the API sends as the ETag."""

    loan: LoanRow
    version: int

    @classmethod
    def of(cls, row: Sequence[Any]) -> "VersionedLoan":
        """The loan in a row selected with `LOAN_COLUMNS` and then `Loan.version`."""
        return cls(loan_row(row), row[10])
