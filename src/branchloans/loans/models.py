"""The `loans` table and the `loan_events` history of each loan."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from branchloans.db import Base

MAX_AMOUNT = Decimal("50000")
MAX_TERM_MONTHS = 360
MAX_APR = Decimal("100")
BORROWER_ID_MAX_LENGTH = 64


class LoanStatus(StrEnum):
    """Where a loan is in its life."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    DISBURSED = "disbursed"
    REPAID = "repaid"
    DEFAULTED = "defaulted"


_STATUSES = ", ".join(f"'{status}'" for status in LoanStatus)
REASON_MAX_LENGTH = 500
REFERENCE_MAX_LENGTH = 128


def _in_minor_units(column: str) -> CheckConstraint:
    # `currency_minor_units()` is migration 0010's copy of branchloans.currencies' table.
    return CheckConstraint(
        f"round({column}, currency_minor_units(currency)) = {column}",
        name=f"{column.removesuffix('_principal')}_in_minor_units",
    )


def _status_type() -> Enum:
    # Stored as its value ("pending") in a VARCHAR; a CHECK constraint keeps it honest.
    return Enum(
        LoanStatus,
        native_enum=False,
        length=16,
        values_callable=lambda statuses: [status.value for status in statuses],
    )


class Loan(Base):
    """A loan application and its current state.

    The CHECK constraints repeat the API's validation so that no other writer
    (a script, a migration, psql) can store a loan the API would refuse.
    """

    __tablename__ = "loans"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    borrower_id: Mapped[str] = mapped_column(String(BORROWER_ID_MAX_LENGTH))
    # Exactly as many decimals as the currency's ISO 4217 minor unit (a CHECK): 3 for KWD.
    amount: Mapped[Decimal] = mapped_column(Numeric)
    currency: Mapped[str] = mapped_column(CHAR(3))
    status: Mapped[LoanStatus] = mapped_column(
        _status_type(), default=LoanStatus.PENDING, server_default=LoanStatus.PENDING.value
    )
    term_months: Mapped[int | None] = mapped_column(Integer)
    interest_rate_apr: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disbursed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Kept by the service as payments are recorded (NULL before disbursement): what is left of
    # the principal, and the due date of the oldest instalment not yet fully paid.
    outstanding_principal: Mapped[Decimal | None] = mapped_column(Numeric)
    oldest_unpaid_due: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        CheckConstraint(f"amount > 0 AND amount <= {MAX_AMOUNT}", name="amount_range"),
        _in_minor_units("amount"),
        _in_minor_units("outstanding_principal"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_code"),
        CheckConstraint(f"status IN ({_STATUSES})", name="status_known"),
        CheckConstraint(
            f"term_months IS NULL OR term_months BETWEEN 1 AND {MAX_TERM_MONTHS}",
            name="term_months_range",
        ),
        CheckConstraint(
            f"interest_rate_apr IS NULL OR interest_rate_apr BETWEEN 0 AND {MAX_APR}",
            name="interest_rate_apr_range",
        ),
        CheckConstraint("length(btrim(borrower_id)) > 0", name="borrower_id_present"),
        CheckConstraint("updated_at >= created_at", name="updated_after_created"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint(
            "(disbursed_at IS NOT NULL) = (status IN ('disbursed', 'repaid', 'defaulted'))",
            name="disbursed_at_iff_paid_out",
        ),
    )


# Serves the list order, newest first, with the id breaking ties between equal timestamps.
Index("ix_loans_created_at_id", Loan.created_at.desc(), Loan.id.desc())
# A borrower's loans, in list order.
Index(
    "ix_loans_borrower_id_created_at_id", Loan.borrower_id, Loan.created_at.desc(), Loan.id.desc()
)
# The loans of one status, or of one currency, in list order: filtered pages stay index scans.
Index("ix_loans_status_created_at_id", Loan.status, Loan.created_at.desc(), Loan.id.desc())
Index("ix_loans_currency_created_at_id", Loan.currency, Loan.created_at.desc(), Loan.id.desc())


class LoanTotal(Base):
    """How many loans of a status and currency there are and what they add up to.

    Kept by statement-level triggers on `loans` (migration 0004) in the transaction that
    changes the loans, so every writer (the API, COPY, psql) keeps it exact. Each key is
    spread over a few `slot`s, picked per database connection, so that concurrent
    transactions creating loans in the same currency seldom wait for the same row.
    Statistics add the slots up.
    """

    __tablename__ = "loan_totals"

    status: Mapped[LoanStatus] = mapped_column(_status_type(), primary_key=True)
    currency: Mapped[str] = mapped_column(CHAR(3), primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    loans: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[Decimal] = mapped_column(Numeric)

    __table_args__ = (_in_minor_units("amount"),)


class LoanEvent(Base):
    """One change of a loan's status, written in the same transaction as the change.

    `from_status` is NULL for the event that records the loan's creation.
    """

    __tablename__ = "loan_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    loan_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("loans.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[LoanStatus | None] = mapped_column(_status_type())
    to_status: Mapped[LoanStatus] = mapped_column(_status_type())
    reason: Mapped[str | None] = mapped_column(String(REASON_MAX_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str | None] = mapped_column(String(128))
    # A repayment's amount, or the outstanding amount a default writes off; else NULL.
    amount: Mapped[Decimal | None] = mapped_column(Numeric)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )

    __table_args__ = (
        CheckConstraint(f"to_status IN ({_STATUSES})", name="to_status_known"),
        CheckConstraint(
            f"from_status IS NULL OR from_status IN ({_STATUSES})", name="from_status_known"
        ),
    )


class Repayment(Base):
    """A payment received on a disbursed loan and how it was allocated to the schedule.

    `allocation` lists, per instalment, the interest and principal the payment paid (amounts
    as decimal strings); `interest` and `principal` are their sums, which add up to `amount`.
    """

    __tablename__ = "repayments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    loan_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("loans.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[Decimal] = mapped_column(Numeric)
    interest: Mapped[Decimal] = mapped_column(Numeric)
    principal: Mapped[Decimal] = mapped_column(Numeric)
    allocation: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reference: Mapped[str | None] = mapped_column(String(REFERENCE_MAX_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str | None] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )

    __table_args__ = (
        CheckConstraint("amount > 0 AND amount = interest + principal", name="amount_allocated"),
        CheckConstraint("interest >= 0 AND principal >= 0", name="parts_not_negative"),
    )


class LoanArrears(Base):
    """Disbursed loans and their outstanding principal, per currency and oldest unpaid due date.

    Kept by statement-level triggers on `loans` (migration 0008), like `loan_totals`, so the
    portfolio at risk as of any day is a sum over at most a few thousand rows (one per
    currency and day), whatever the number of loans. `infinity` stands for a loan without a
    schedule (no term or rate).
    """

    __tablename__ = "loan_arrears"

    currency: Mapped[str] = mapped_column(CHAR(3), primary_key=True)
    oldest_unpaid_due: Mapped[date] = mapped_column(Date, primary_key=True)
    loans: Mapped[int] = mapped_column(BigInteger)
    outstanding_principal: Mapped[Decimal] = mapped_column(Numeric)

    __table_args__ = (_in_minor_units("outstanding_principal"),)
