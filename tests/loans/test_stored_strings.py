"""Strings Postgres cannot store, or that make no sense where they are sent, are the
client's mistake: 422 naming the field, never a 500."""

from typing import Any

import httpx
import pytest

from branchloans.loans.lifecycle import LoanAction
from branchloans.loans.models import LoanStatus
from tests.loans.test_lifecycle import act, loan_in

NEW_LOAN = {"borrower_id": "usr_strings", "amount": 100, "currency": "KES"}


def _refused_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors: list[dict[str, Any]] = response.json()["errors"]
    return str(errors[0]["field"])


@pytest.mark.parametrize("borrower_id", ["a\x00b", "a\x1bb", "a\x9bb"])
async def test_list_filter_with_nul_or_control_character_is_422_naming_it(
    client: httpx.AsyncClient, borrower_id: str
) -> None:
    response = await client.get("/api/loans", params={"borrower_id": borrower_id})
    assert _refused_field(response) == "borrower_id"


async def test_list_filter_with_nul_in_the_raw_query_is_422(client: httpx.AsyncClient) -> None:
    assert _refused_field(await client.get("/api/loans?borrower_id=a%00b")) == "borrower_id"


@pytest.mark.parametrize(
    "reason",
    ["a\u0000b", "a\x07b", "x" * 501, "invoice \u202egpj.exe", "a\u202ab", "a\x1b[31mb"],
)
async def test_action_with_unstorable_reason_is_422_and_changes_nothing(
    client: httpx.AsyncClient, reason: str
) -> None:
    loan_id = await loan_in(client, LoanStatus.PENDING)

    response = await act(client, loan_id, LoanAction.APPROVE, json={"reason": reason})

    assert _refused_field(response) == "reason"
    assert (await client.get(f"/api/loans/{loan_id}")).json()["status"] == LoanStatus.PENDING


async def test_reason_may_span_lines(client: httpx.AsyncClient) -> None:
    loan_id = await loan_in(client, LoanStatus.PENDING)
    reason = "Income verified\n\tpayslips for March and April"

    response = await act(client, loan_id, LoanAction.APPROVE, json={"reason": reason})

    assert response.status_code == 200
    events = (await client.get(f"/api/loans/{loan_id}/events")).json()
    assert events[-1]["reason"] == reason


@pytest.mark.parametrize("borrower_id", ["a\x00b", "a\x85b", "usr\u202d_1"])
async def test_create_with_unstorable_borrower_id_is_422_naming_it(
    client: httpx.AsyncClient, borrower_id: str
) -> None:
    response = await client.post("/api/loans", json={**NEW_LOAN, "borrower_id": borrower_id})
    assert _refused_field(response) == "borrower_id"
