"""Request and response bodies of the loans API."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from branchloans.currencies import MINOR_UNITS, in_minor_units
from branchloans.loans.fields import (
    CURRENCIES_BY_DECIMALS,
    Amount,
    BorrowerId,
    Currency,
    DecimalNumber,
    InterestRateApr,
    TermMonths,
)
from branchloans.loans.models import REASON_MAX_LENGTH, LoanStatus
from branchloans.text import StoredText

LOAN_CREATE_SCHEMA_EXTRA: dict[str, Any] = {
    "examples": [
        {
            "borrower_id": "usr_india_123",
            "amount": 15000.00,
            "currency": "INR",
            "term_months": 12,
            "interest_rate_apr": 18.50,
        }
    ],
    # The amount's decimals depend on the currency: none for VND, 3 for KWD, 2 for most.
    "allOf": [
        {
            "if": {"properties": {"currency": {"enum": codes}}, "required": ["currency"]},
            "then": {"properties": {"amount": {"multipleOf": 10**-units}}},
        }
        for units, codes in CURRENCIES_BY_DECIMALS.items()
    ],
}


class LoanCreate(BaseModel):
    """A new loan application."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=LOAN_CREATE_SCHEMA_EXTRA)

    borrower_id: BorrowerId
    amount: Amount
    currency: Currency
    term_months: TermMonths | None = None
    interest_rate_apr: InterestRateApr | None = None

    @model_validator(mode="after")
    def _amount_in_minor_units(self) -> "LoanCreate":
        # Stored with exactly the currency's decimals (10.000 USD as 10.00, 100.0 VND as 100),
        # so that the row holds what the API will show; finer amounts are left for the router
        # to refuse.
        exact = in_minor_units(self.amount, self.currency)
        if exact == self.amount:
            self.amount = exact
        return self

    def amount_decimals_error(self) -> str | None:
        """Why the amount has too many decimals for its currency, or None when it has not.

        Not a validator: pydantic has no supported way to report a check of two fields at
        `amount`, where the client must see it, so the router reports it.
        """
        if self.amount == in_minor_units(self.amount, self.currency):
            return None
        allowed = MINOR_UNITS[self.currency]
        if allowed == 0:
            return f"must be a whole number in {self.currency}, which has no decimals"
        return f"must have at most {allowed} decimals in {self.currency}"


class LoanRead(BaseModel):
    """A loan as the API shows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "00000000-0000-0000-0000-000000000002",
                    "borrower_id": "usr_india_001",
                    "amount": 15000.00,
                    "currency": "INR",
                    "status": "approved",
                    "term_months": 12,
                    "interest_rate_apr": 18.50,
                    "created_at": "2025-01-01T00:00:00Z",
                    "updated_at": "2025-01-02T09:30:00Z",
                    "disbursed_at": None,
                }
            ]
        },
    )

    id: uuid.UUID
    borrower_id: str
    amount: DecimalNumber
    currency: str
    status: LoanStatus
    term_months: int | None
    interest_rate_apr: DecimalNumber | None
    created_at: datetime
    updated_at: datetime
    disbursed_at: datetime | None = Field(description="When the money went out; null before.")


class AtRisk(BaseModel):
    """The outstanding principal of loans overdue beyond a number of days, and its share."""

    amount: DecimalNumber = Field(
        description="Outstanding principal of the disbursed loans with an instalment unpaid "
        "for more than this many days."
    )
    ratio: DecimalNumber = Field(
        description="`amount` over the currency's outstanding principal, 4 decimals (0 when "
        "nothing is outstanding)."
    )


class PortfolioAtRisk(BaseModel):
    """A currency's book: what is outstanding, and how much of it is at risk (PAR)."""

    outstanding_principal: DecimalNumber = Field(
        description="Principal not yet repaid over every disbursed loan."
    )
    loans: int = Field(description="Disbursed loans.")
    par_30: AtRisk = Field(description="Loans with a payment more than 30 days overdue.")
    par_90: AtRisk = Field(description="Loans with a payment more than 90 days overdue.")


class LoanStats(BaseModel):
    """Portfolio totals."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "total_loans": 2,
                    "total_amount": 15100.00,
                    "avg_amount": 7550.00,
                    "by_status": {
                        **{status.value: 0 for status in LoanStatus},
                        "pending": 1,
                        "approved": 1,
                    },
                    "by_currency": {"INR": 1, "USD": 1},
                    "amount_by_currency": {"INR": 15000.00, "USD": 100.00},
                }
            ]
        }
    )

    total_loans: int
    total_amount: DecimalNumber = Field(
        description="Sum of all amounts regardless of currency, as the seed API reported it; "
        "see `amount_by_currency` for figures that mean something."
    )
    avg_amount: DecimalNumber = Field(description="Mean amount, rounded half-even to 2 decimals.")
    by_status: dict[LoanStatus, int] = Field(description="Every status, with zero where none.")
    by_currency: dict[str, int]
    amount_by_currency: dict[str, DecimalNumber]
    at_risk_by_currency: dict[str, PortfolioAtRisk] = Field(
        default_factory=dict,
        description="Per currency with disbursed loans: the outstanding principal and the "
        "portfolio at risk, as of today (UTC).",
    )


class TransitionRequest(BaseModel):
    """Why a clerk takes an action; the body itself is optional."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Income verified"}]}
    )

    reason: (
        StoredText[
            Annotated[
                str,
                StringConstraints(
                    strip_whitespace=True, min_length=1, max_length=REASON_MAX_LENGTH
                ),
                Field(
                    description="Free text; tab and line breaks allowed, no NUL, lone"
                    " surrogate, other control character or bidi override (U+202A to U+202E)."
                ),
            ]
        ]
        | None
    ) = None


class LoanEventRead(BaseModel):
    """One entry of a loan's history."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "loan_id": "00000000-0000-0000-0000-000000000002",
                    "from_status": "pending",
                    "to_status": "approved",
                    "reason": "Income verified",
                    "request_id": "3f1c2a4e-8d0b-4d8e-9a53-1f0e2c7b9d11",
                    "actor": None,
                    "occurred_at": "2025-01-02T09:30:00Z",
                }
            ]
        },
    )

    id: int
    loan_id: uuid.UUID
    from_status: LoanStatus | None = Field(description="null for the loan's creation")
    to_status: LoanStatus
    reason: str | None
    request_id: str | None
    actor: str | None = Field(description="Who acted, when the request was authenticated.")
    amount: DecimalNumber | None = Field(
        default=None,
        description="For a repayment, the amount paid; for a default, the outstanding amount "
        "written off (payoff amount on the day); else null.",
    )
    occurred_at: datetime
