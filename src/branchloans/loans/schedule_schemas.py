"""A repayment schedule as the API shows it."""

import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from branchloans.loans.fields import DecimalNumber


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
                        # number, due_date, payment, principal, interest, balance
                        dict(zip(Instalment.model_fields, row, strict=True))
                        for row in (
                            (1, "2025-02-28", 340.02, 330.02, 10.00, 669.98),
                            (2, "2025-03-31", 340.02, 333.32, 6.70, 336.66),
                            (3, "2025-04-30", 340.03, 336.66, 3.37, 0.00),
                        )
                    ],
                    "totals": {"principal": 1000.00, "interest": 20.07, "payable": 1020.07},
                }
            ]
        }
    )
