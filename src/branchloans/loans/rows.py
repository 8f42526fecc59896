"""Loans and events as the service reads them: typed rows, serialised as they are."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from branchloans.loans.models import Loan, LoanEvent, LoanStatus

# What the API shows of a loan, in LoanRow's order.
LOAN_COLUMNS = (
    Loan.id,
    Loan.borrower_id,
    Loan.amount,
    Loan.currency,
    Loan.status,
    Loan.term_months,
    Loan.interest_rate_apr,
    Loan.created_at,
    Loan.updated_at,
    Loan.disbursed_at,
)
EVENT_COLUMNS = (
    LoanEvent.id,
    LoanEvent.loan_id,
    LoanEvent.from_status,
    LoanEvent.to_status,
    LoanEvent.reason,
    LoanEvent.request_id,
    LoanEvent.actor,
    LoanEvent.occurred_at,
)
# A plain lookup: calling the enum class per value would cost a list page measurably.
_STATUS = {status.value: status for status in LoanStatus}


@dataclass(frozen=True, slots=True)
class LoanRow:
    """A loan as the API shows it: `LoanRead`'s fields (orjson writes it as an object)."""

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

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "LoanRow":
        """The loan in a row selected with `LOAN_COLUMNS`."""
        return cls(
            row["id"],
            row["borrower_id"],
            row["amount"],
            row["currency"],
            _STATUS[row["status"]],
            row["term_months"],
            row["interest_rate_apr"],
            row["created_at"],
            row["updated_at"],
            row["disbursed_at"],
        )


@dataclass(frozen=True, slots=True)
class VersionedLoan:
    """A loan and its version, which the API sends as the ETag."""

    loan: LoanRow
    version: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "VersionedLoan":
        """The loan in a row selected with `LOAN_COLUMNS` and `Loan.version`."""
        return cls(LoanRow.of(row), row["version"])


@dataclass(frozen=True, slots=True)
class EventRow:
    """One change of a loan's status: `LoanEventRead`'s fields."""

    id: int
    loan_id: uuid.UUID
    from_status: LoanStatus | None
    to_status: LoanStatus
    reason: str | None
    request_id: str | None
    actor: str | None
    occurred_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "EventRow":
        """The event in a row selected with `EVENT_COLUMNS`."""
        from_status = row["from_status"]
        return cls(
            row["id"],
            row["loan_id"],
            None if from_status is None else _STATUS[from_status],
            _STATUS[row["to_status"]],
            row["reason"],
            row["request_id"],
            row["actor"],
            row["occurred_at"],
        )
