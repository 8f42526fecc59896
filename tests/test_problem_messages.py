"""Each bad input's answer says what is wrong and what is accepted, under a stable `type`."""

import json
from typing import Any

import httpx
import pytest

VALID = {
    "borrower_id": "usr_1",
    "amount": 1000,
    "currency": "INR",
    "term_months": 12,
    "interest_rate_apr": 18.5,
}
LOANS = "/api/loans"
# The body is checked before the loan is looked up: no loan needs to exist.
APPROVE = "/api/loans/00000000-0000-0000-0000-000000000001/approve"


def changed(**changes: Any) -> str:
    """The valid application with fields changed; `...` removes one."""
    body = {**VALID, **changes}
    return json.dumps({key: value for key, value in body.items() if value is not ...})


ISO_4217 = "currency must be an ISO 4217 currency code such as INR, KES or USD; '{}' is not one"
CASES: list[tuple[str, str, str | None, str, str]] = [
    # method, path, body, type, message (of the only field error)
    ("POST", LOANS, changed(borrower_id=...), "required", "borrower_id is required"),
    ("POST", LOANS, changed(borrower_id="   "), "blank", "borrower_id must not be blank"),
    ("POST", LOANS, changed(borrower_id=""), "blank", "borrower_id must not be blank"),
    (
        "POST",
        LOANS,
        changed(borrower_id="x" * 65),
        "too_long",
        "borrower_id must be at most 64 characters long",
    ),
    (
        "POST",
        LOANS,
        changed(borrower_id=12),
        "not_text",
        "borrower_id must be text in double quotes",
    ),
    (
        "POST",
        LOANS,
        changed(borrower_id="a\u0001b"),
        "invalid_characters",
        "borrower_id must be printable text, without control characters",
    ),
    ("POST", LOANS, changed(amount=...), "required", "amount is required"),
    ("POST", LOANS, changed(amount=0), "too_small", "amount must be greater than 0"),
    ("POST", LOANS, changed(amount=-5), "too_small", "amount must be greater than 0"),
    ("POST", LOANS, changed(amount=50000.01), "too_large", "amount must be 50000 or less"),
    ("POST", LOANS, changed(amount="abc"), "not_a_number", "amount must be a number, e.g. 1500.00"),
    (
        "POST",
        LOANS,
        changed(amount=True),
        "not_a_number",
        "amount must be a number, e.g. 1500.00, not true/false",
    ),
    ("POST", LOANS, changed(amount=None), "not_a_number", "amount must be a number, e.g. 1500.00"),
    (
        "POST",
        LOANS,
        changed(amount="NaN"),
        "not_a_number",
        "amount must be a finite number, e.g. 1500.00",
    ),
    (
        "POST",
        LOANS,
        changed(amount=1.234, currency="USD"),
        "too_many_decimals",
        "amount must have at most 2 decimals in USD",
    ),
    (
        "POST",
        LOANS,
        changed(amount=1.5, currency="VND"),
        "too_many_decimals",
        "amount must be a whole number in VND, which has no decimals",
    ),
    ("POST", LOANS, changed(currency=...), "required", "currency is required"),
    ("POST", LOANS, changed(currency="dollars"), "unknown_currency", ISO_4217.format("dollars")),
    ("POST", LOANS, changed(currency="XYZ"), "unknown_currency", ISO_4217.format("XYZ")),
    ("POST", LOANS, changed(currency="US"), "unknown_currency", ISO_4217.format("US")),
    ("POST", LOANS, changed(currency=840), "not_text", "currency must be text in double quotes"),
    ("POST", LOANS, changed(term_months=0), "too_small", "term_months must be 1 or more"),
    ("POST", LOANS, changed(term_months=361), "too_large", "term_months must be 360 or less"),
    (
        "POST",
        LOANS,
        changed(term_months="12"),
        "not_a_whole_number",
        "term_months must be a whole number, e.g. 12",
    ),
    (
        "POST",
        LOANS,
        changed(term_months=1.5),
        "not_a_whole_number",
        "term_months must be a whole number, e.g. 12",
    ),
    (
        "POST",
        LOANS,
        changed(interest_rate_apr=-1),
        "too_small",
        "interest_rate_apr must be 0 or more",
    ),
    (
        "POST",
        LOANS,
        changed(interest_rate_apr=100.01),
        "too_large",
        "interest_rate_apr must be 100 or less",
    ),
    (
        "POST",
        LOANS,
        changed(interest_rate_apr=1.234),
        "too_many_decimals",
        "interest_rate_apr must have at most 2 decimals, e.g. 1500.25",
    ),
    (
        "POST",
        LOANS,
        changed(status="approved"),
        "unknown_field",
        "status is not a field this request takes; leave it out",
    ),
    ("POST", LOANS, "[1, 2]", "not_an_object", "The body must be a JSON object, not an array"),
    ("POST", LOANS, '"loan"', "not_an_object", "The body must be a JSON object, not a string"),
    ("POST", LOANS, "null", "not_an_object", "The body must be a JSON object, not null"),
    ("POST", LOANS, "", "required", "The body must be a JSON object; none was sent"),
    (
        "GET",
        f"{LOANS}?status=open",
        None,
        "not_allowed",
        "status must be one of 'pending', 'approved', 'rejected', 'disbursed', 'repaid'"
        " or 'defaulted'",
    ),
    ("GET", f"{LOANS}?limit=0", None, "too_small", "limit must be 1 or more"),
    (
        "GET",
        f"{LOANS}?created_before=2025-06-01T09:00:00",
        None,
        "missing_offset",
        "created_before must include its offset from UTC, e.g. 2025-01-31T09:30:00Z",
    ),
    (
        "GET",
        f"{LOANS}?limit=ten",
        None,
        "not_a_whole_number",
        "limit must be a whole number, e.g. 12",
    ),
    ("GET", f"{LOANS}?currency=dollars", None, "unknown_currency", ISO_4217.format("dollars")),
    (
        "GET",
        f"{LOANS}?created_after=yesterday",
        None,
        "not_a_datetime",
        "created_after must be an ISO 8601 time with an offset, e.g. 2025-01-31T09:30:00Z",
    ),
    (
        "GET",
        f"{LOANS}?cursor=garbage",
        None,
        "invalid_cursor",
        "cursor must be copied unchanged from a Link header of this API",
    ),
    (
        "GET",
        f"{LOANS}/not-a-uuid",
        None,
        "not_a_uuid",
        "loan_id must be a UUID, e.g. 00000000-0000-0000-0000-000000000001",
    ),
    ("POST", APPROVE, '{"reason": "   "}', "blank", "reason must not be blank"),
]


@pytest.mark.parametrize(("method", "path", "body", "type_", "message"), CASES)
async def test_bad_input_is_422_saying_what_is_wrong_and_what_is_accepted(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: str | None,
    type_: str,
    message: str,
) -> None:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    response = await client.request(method, path, content=body, headers=headers)

    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "https://branchloans.com/problems/validation-error"
    assert [(error["type"], error["message"]) for error in problem["errors"]] == [(type_, message)]
    assert problem["detail"] == f"{message}."


@pytest.mark.parametrize(
    ("body", "where"),
    [('{"borrower_id": "x",', "line 1, column 21"), ('{\n  "amount": 1,\n  oops\n}', "line 3")],
)
async def test_malformed_json_is_400_naming_the_line_and_column(
    client: httpx.AsyncClient, body: str, where: str
) -> None:
    response = await client.post(LOANS, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    problem = response.json()
    assert problem["type"] == "https://branchloans.com/problems/malformed-json"
    assert f" at {where}" in problem["detail"]
    assert "Send one JSON object" in problem["detail"]


async def test_every_bad_field_is_in_the_detail(client: httpx.AsyncClient) -> None:
    response = await client.post(LOANS, json={"amount": 0, "currency": "dollars"})

    assert response.json()["detail"] == (
        "borrower_id is required; amount must be greater than 0; "
        + ISO_4217.format("dollars")
        + "."
    )
