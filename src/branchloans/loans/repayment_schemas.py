"""Request and response bodies of repayments and of a loan's serviced schedule."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from branchloans.loans.models import MAX_AMOUNT, REFERENCE_MAX_LENGTH
from branchloans.loans.schemas import (
    DecimalNumber,
    Instalment,
    LoanSchedule,
    UtcDatetime,
    _refuse_bool,
)
from branchloans.text import StoredLine

# No payment can exceed a loan's payoff amount; this only bounds what is parsed.
MAX_PAYMENT = MAX_AMOUNT * 2


class RepaymentCreate(BaseModel):
    """A payment received from the borrower."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"amount": 340.02, "paid_at": "2025-02-27T10:00:00Z", "reference": "MPESA-QX81"}
            ]
        },
    )

    amount: Annotated[
        Decimal,
        BeforeValidator(_refuse_bool),
        Field(gt=0, le=MAX_PAYMENT, allow_inf_nan=False),
        # What clients should send: a JSON number (numeric strings are accepted too, but left
        # out of the documented schema, as for a loan's amount).
        WithJsonSchema(
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": float(MAX_PAYMENT),
                "description": "In the loan's currency, at most its minor unit's decimals.",
            },
            mode="validation",
        ),
    ]
    paid_at: UtcDatetime | None = Field(
        default=None, description="When the money was received (not in the future); now if absent."
    )
    reference: (
        StoredLine[
            Annotated[
                str,
                StringConstraints(
                    strip_whitespace=True, min_length=1, max_length=REFERENCE_MAX_LENGTH
                ),
            ]
        ]
        | None
    ) = Field(
        default=None,
        description="The payment's reference in the payer's system: one line (no NUL, lone "
        "surrogate, control character or bidi override).",
    )


class AllocationRead(BaseModel):
    """What a payment paid of one instalment."""

    instalment: int
    interest: DecimalNumber
    principal: DecimalNumber


class RepaymentRead(BaseModel):
    """A recorded payment and its allocation to the schedule."""

    id: int
    loan_id: uuid.UUID
    currency: str = Field(description="The loan's currency.")
    amount: DecimalNumber
    interest: DecimalNumber = Field(description="The part of the payment that paid interest.")
    principal: DecimalNumber = Field(description="The part of the payment that repaid principal.")
    allocation: list[AllocationRead] = Field(description="Per instalment, in instalment order.")
    paid_at: datetime
    reference: str | None
    recorded_at: datetime
    loan_status: str = Field(description="The loan's status once the payment was recorded.")


class ServicedInstalment(Instalment):
    """An instalment and how much of it has been paid."""

    paid: DecimalNumber = Field(description="What payments have paid of it.")
    remaining: DecimalNumber = Field(description="`payment` less `paid`.")
    overdue: bool = Field(description="Due before today and not fully paid.")


def _serviced_example() -> dict[str, Any]:
    # The schedule's own example, on 2025-03-10 after one payment of 100.00 on 2025-02-20.
    extra: Any = LoanSchedule.model_config["json_schema_extra"]
    example: dict[str, Any] = extra["examples"][0]
    paid = [Decimal("100.00"), Decimal("0.00"), Decimal("0.00")]
    instalments = [
        {
            **row,
            "paid": float(amount),
            "remaining": float(Decimal(str(row["payment"])) - amount),
            "overdue": row["number"] == 1,
        }
        for row, amount in zip(example["instalments"], paid, strict=True)
    ]
    return {
        **example,
        "instalments": instalments,
        "as_of": "2025-03-10",
        "outstanding_principal": 910.00,
        "payoff_amount": 916.70,
        "days_past_due": 10,
    }


class ServicedSchedule(LoanSchedule):
    """A loan's schedule with what has been paid and what is owed, as of a day."""

    model_config = ConfigDict(json_schema_extra={"examples": [_serviced_example()]})

    instalments: list[ServicedInstalment]  # type: ignore[assignment]
    as_of: date = Field(description="The day (UTC) the figures below are for: today.")
    outstanding_principal: DecimalNumber = Field(description="Principal not yet repaid.")
    payoff_amount: DecimalNumber = Field(
        description="What clears the loan today: outstanding principal plus the unpaid interest "
        "of overdue instalments and of the current one."
    )
    days_past_due: int = Field(description="Days since the oldest unpaid instalment fell due.")
