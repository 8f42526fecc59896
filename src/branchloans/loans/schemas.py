"""Request and response bodies of the loans API."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from branchloans.currencies import MINOR_UNITS, in_minor_units, is_currency
from branchloans.loans.models import (
    BORROWER_ID_MAX_LENGTH,
    MAX_AMOUNT,
    MAX_APR,
    MAX_TERM_MONTHS,
    REASON_MAX_LENGTH,
    LoanStatus,
)
from branchloans.text import StoredLine, StoredText

CENT = Decimal("0.01")


def _currencies_by_decimals() -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for code, units in sorted(MINOR_UNITS.items()):
        groups.setdefault(units, []).append(code)
    return dict(sorted(groups.items()))


CURRENCIES_BY_DECIMALS = _currencies_by_decimals()
"""Decimals -> the currencies whose amounts have that many, for the documentation."""


def _decimals_description() -> str:
    def listed(units: int) -> str:
        return ", ".join(CURRENCIES_BY_DECIMALS[units])

    others = [units for units in CURRENCIES_BY_DECIMALS if units != 2]
    return (
        "In the currency's ISO 4217 minor unit, never more decimals: "
        + "; ".join(f"{units} for {listed(units)}" for units in others)
        + "; 2 for every other currency."
    )


def _refuse_bool(value: Any) -> Any:
    # Python counts True as 1; a client sending `true` for an amount made a mistake.
    if isinstance(value, bool):
        raise PydanticCustomError("not_a_number", "must be a number, e.g. 1500.00, not true/false")
    return value


def _at_most_two_decimals(value: Decimal) -> Decimal:
    if value != value.quantize(CENT):
        raise PydanticCustomError("too_many_decimals", "must have at most 2 decimals, e.g. 1500.25")
    return value.quantize(CENT)


def _currency_code(value: str) -> str:
    code = value.upper()
    if not is_currency(code):
        raise PydanticCustomError(
            "unknown_currency",
            "must be an ISO 4217 currency code such as INR, KES or USD; '{value}' is not one",
            # Quoted escaped: a lone surrogate cannot be written into the message (or JSON).
            {"value": value.encode("utf-8", "backslashreplace").decode("utf-8")},
        )
    return code


def _in_utc(value: datetime) -> datetime:
    # 0001-01-01T00:00+14:00 is a valid ISO 8601 time whose UTC instant Python cannot hold.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "out_of_range",
            "must fall between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z once converted to UTC",
        ) from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An ISO 8601 time with an offset, converted to UTC; a 422 when UTC cannot hold it."""

DecimalNumber = Annotated[
    Decimal,
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""A Decimal that the API writes as an exact JSON number."""

BorrowerId = StoredLine[
    Annotated[
        str,
        StringConstraints(
            strip_whitespace=True,
            min_length=1,
            max_length=BORROWER_ID_MAX_LENGTH,
            # Something printable besides white space, which is trimmed from both ends.
            pattern=r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s][^\x00-\x1f\x7f]*$",
        ),
        Field(
            description="The borrower's identifier in the calling system: one line, not blank"
            " (no NUL, lone surrogate, control character or bidi override).",
            examples=["usr_india_123"],
        ),
    ]
]


def _number_schema(description: str, **limits: Decimal) -> WithJsonSchema:
    # What clients should send: a JSON number. Numeric strings ("15000.00") are accepted too,
    # but left out of the documented schema.
    return WithJsonSchema(
        {
            "type": "number",
            **{name: float(limit) for name, limit in limits.items()},
            "description": description,
        },
        mode="validation",
    )


# The decimals an amount may have depend on its currency: `LoanCreate` checks them, and its
# schema states them per currency.
Amount = Annotated[
    Decimal,
    BeforeValidator(_refuse_bool),
    Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False),
    _number_schema(
        f"Principal. {_decimals_description()}",
        exclusiveMinimum=Decimal(0),
        maximum=MAX_AMOUNT,
    ),
]

Currency = Annotated[
    str,
    AfterValidator(_currency_code),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(MINOR_UNITS),
            "description": "ISO 4217 code in circulation; lower case is accepted and upper-cased.",
            "examples": ["INR"],
        }
    ),
]


def _json_number(value: Any) -> Any:
    # A count of months is a JSON number: 12 or 12.0 (JSON Schema's integers), not "12" or true.
    if isinstance(value, bool | str):
        raise PydanticCustomError("not_a_whole_number", "must be a whole number, e.g. 12")
    return value


TermMonths = Annotated[
    int,
    Field(ge=1, le=MAX_TERM_MONTHS, description="Length of the loan in months."),
    BeforeValidator(_json_number),
]

InterestRateApr = Annotated[
    Decimal,
    BeforeValidator(_refuse_bool),
    Field(ge=0, le=MAX_APR, allow_inf_nan=False),
    AfterValidator(_at_most_two_decimals),
    _number_schema(
        "Annual rate in percent, 2 decimals.",
        minimum=Decimal(0),
        maximum=MAX_APR,
        multipleOf=CENT,
    ),
]


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
        from_attributes=True,
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
                        "pending": 1,
                        "approved": 1,
                        "rejected": 0,
                        "disbursed": 0,
                        "repaid": 0,
                        "defaulted": 0,
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
        from_attributes=True,
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


class Instalment(BaseModel):
    """One monthly instalment of a repayment schedule."""

    number: int = Field(description="1 for the first instalment.")
    due_date: date = Field(
        description="The start date plus `number` months, same day of the month or the "
        "month's last day when it is shorter."
    )
    payment: DecimalNumber = Field(description="What the borrower pays: principal + interest.")
    principal: DecimalNumber = Field(description="The part of the payment that repays the loan.")
    interest: DecimalNumber = Field(
        description="The month's interest: the previous balance times APR / 100 / 12, "
        "rounded half-even to the currency's minor unit."
    )
    balance: DecimalNumber = Field(description="What remains owed after this payment.")


class ScheduleTotals(BaseModel):
    """Sums over every instalment."""

    principal: DecimalNumber = Field(description="Always the loan amount.")
    interest: DecimalNumber
    payable: DecimalNumber = Field(description="Principal plus interest.")


class RepaymentSchedule(BaseModel):
    """What a borrower owes, month by month, exact to the currency's minor unit."""

    currency: str
    principal: DecimalNumber = Field(description="The loan amount, in the currency's decimals.")
    term_months: int
    interest_rate_apr: DecimalNumber = Field(
        description="Nominal annual rate in percent, compounded monthly (APR / 100 / 12 a month)."
    )
    start_date: date = Field(
        description="The day (UTC) instalments are counted from: instalment k is due k months on."
    )
    payment: DecimalNumber = Field(
        description="The regular instalment: the annuity rounded half-even to the minor unit. "
        "The last instalment absorbs the rounding. Over long terms at high rates, where equal "
        "instalments would compound their rounding, some differ from it by a minor unit or two "
        "so that the interest stays the exact annuity's."
    )
    instalments: list[Instalment]
    totals: ScheduleTotals


class _LoanReference(BaseModel):
    loan_id: uuid.UUID


# _LoanReference comes last among the bases so that pydantic puts its field first.
class LoanSchedule(RepaymentSchedule, _LoanReference):
    """A loan's repayment schedule, as `GET /api/loans/{loan_id}/schedule` answers it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "loan_id": "00000000-0000-0000-0000-000000000007",
                    "currency": "USD",
                    "principal": 1000.00,
                    "term_months": 3,
                    "interest_rate_apr": 12.00,
                    "start_date": "2025-01-31",
                    "payment": 340.02,
                    "instalments": [
                        {
                            "number": 1,
                            "due_date": "2025-02-28",
                            "payment": 340.02,
                            "principal": 330.02,
                            "interest": 10.00,
                            "balance": 669.98,
                        },
                        {
                            "number": 2,
                            "due_date": "2025-03-31",
                            "payment": 340.02,
                            "principal": 333.32,
                            "interest": 6.70,
                            "balance": 336.66,
                        },
                        {
                            "number": 3,
                            "due_date": "2025-04-30",
                            "payment": 340.03,
                            "principal": 336.66,
                            "interest": 3.37,
                            "balance": 0.00,
                        },
                    ],
                    "totals": {"principal": 1000.00, "interest": 20.07, "payable": 1020.07},
                }
            ]
        }
    )
