"""Field types the loans API's bodies and queries share: money, currencies, times, borrowers."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from branchloans.currencies import MINOR_UNITS, is_currency
from branchloans.loans.models import BORROWER_ID_MAX_LENGTH, MAX_AMOUNT, MAX_APR, MAX_TERM_MONTHS
from branchloans.text import StoredLine

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


def refuse_bool(value: Any) -> Any:
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

DecimalNumber = Annotated[Decimal, WithJsonSchema({"type": "number"}, mode="serialization")]
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
    BeforeValidator(refuse_bool),
    Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False),
    _number_schema(
        f"Principal. {_decimals_description()}", exclusiveMinimum=Decimal(0), maximum=MAX_AMOUNT
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
    BeforeValidator(refuse_bool),
    Field(ge=0, le=MAX_APR, allow_inf_nan=False),
    AfterValidator(_at_most_two_decimals),
    _number_schema(
        "Annual rate in percent, 2 decimals.", minimum=Decimal(0), maximum=MAX_APR, multipleOf=CENT
    ),
]
