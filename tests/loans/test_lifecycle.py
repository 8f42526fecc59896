"""Loan lifecycle over HTTP: actions, their history, versions and concurrent clerks."""

import asyncio
import itertools
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.loans.lifecycle import TRANSITIONS, LoanAction, allowed_actions
from branchloans.loans.models import Loan, LoanEvent, LoanStatus

NEW_LOAN = {"borrower_id": "usr_ke_42", "amount": 2500.00, "currency": "KES", "term_months": 6}

# The shortest sequence of actions that brings a new loan to each status.
PATH_TO: dict[LoanStatus, list[LoanAction]] = {
    LoanStatus.PENDING: [],
    LoanStatus.APPROVED: [LoanAction.APPROVE],
    LoanStatus.REJECTED: [LoanAction.REJECT],
    LoanStatus.DISBURSED: [LoanAction.APPROVE, LoanAction.DISBURSE],
    LoanStatus.REPAID: [LoanAction.APPROVE, LoanAction.DISBURSE, LoanAction.REPAY],
    LoanStatus.DEFAULTED: [LoanAction.APPROVE, LoanAction.DISBURSE, LoanAction.DEFAULT],
}
ALLOWED = [
    (source, action) for action, transition in TRANSITIONS.items() for source in transition.sources
]
REFUSED = [
    (status, action)
    for status in LoanStatus
    for action in LoanAction
    if status not in TRANSITIONS[action].sources
]


async def create(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/api/loans", json=NEW_LOAN)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def act(
    client: httpx.AsyncClient, loan_id: str, action: LoanAction, **kwargs: Any
) -> httpx.Response:
    return await client.post(f"/api/loans/{loan_id}/{action}", **kwargs)


async def loan_in(client: httpx.AsyncClient, status: LoanStatus) -> str:
    loan_id: str = (await create(client))["id"]
    for action in PATH_TO[status]:
        assert (await act(client, loan_id, action)).status_code == 200
    return loan_id


def test_final_statuses_allow_no_action() -> None:
    for status in (LoanStatus.REJECTED, LoanStatus.REPAID, LoanStatus.DEFAULTED):
        assert allowed_actions(status) == []


def test_pending_loan_may_be_approved_or_rejected() -> None:
    assert allowed_actions(LoanStatus.PENDING) == [LoanAction.APPROVE, LoanAction.REJECT]


@pytest.mark.parametrize(("source", "action"), ALLOWED)
async def test_allowed_action_moves_the_loan(
    client: httpx.AsyncClient, source: LoanStatus, action: LoanAction
) -> None:
    loan_id = await loan_in(client, source)

    response = await act(client, loan_id, action)

    assert response.status_code == 200
    assert response.json()["status"] == TRANSITIONS[action].target
    fetched = await client.get(f"/api/loans/{loan_id}")
    assert fetched.json()["status"] == TRANSITIONS[action].target


@pytest.mark.parametrize(("source", "action"), REFUSED)
async def test_refused_action_is_409_naming_status_and_allowed_actions(
    client: httpx.AsyncClient, source: LoanStatus, action: LoanAction
) -> None:
    loan_id = await loan_in(client, source)

    response = await act(client, loan_id, action)

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["current_status"] == source
    assert problem["allowed_actions"] == [allowed.value for allowed in allowed_actions(source)]
    assert (await client.get(f"/api/loans/{loan_id}")).json()["status"] == source


async def test_action_on_unknown_loan_is_404(client: httpx.AsyncClient) -> None:
    response = await act(client, str(uuid.uuid4()), LoanAction.APPROVE)

    assert response.status_code == 404


async def test_creation_writes_the_first_event(client: httpx.AsyncClient) -> None:
    loan = await create(client)

    events = (await client.get(f"/api/loans/{loan['id']}/events")).json()

    assert len(events) == 1
    assert events[0]["from_status"] is None
    assert events[0]["to_status"] == "pending"
    assert events[0]["loan_id"] == loan["id"]


async def test_events_list_the_history_oldest_first_with_reasons(
    client: httpx.AsyncClient,
) -> None:
    loan_id = (await create(client))["id"]
    await act(client, loan_id, LoanAction.APPROVE, json={"reason": "Income verified"})
    await act(client, loan_id, LoanAction.DISBURSE)

    events = (await client.get(f"/api/loans/{loan_id}/events")).json()

    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "pending"),
        ("pending", "approved"),
        ("approved", "disbursed"),
    ]
    assert [e["reason"] for e in events] == [None, "Income verified", None]
    assert events[0]["occurred_at"] <= events[1]["occurred_at"] <= events[2]["occurred_at"]


async def test_event_is_stored_in_the_same_transaction_as_the_change(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = (await create(client))["id"]

    await act(client, loan_id, LoanAction.REJECT, json={"reason": "  Duplicate application  "})

    rows = (
        await session.scalars(
            select(LoanEvent).where(LoanEvent.loan_id == uuid.UUID(loan_id)).order_by(LoanEvent.id)
        )
    ).all()
    assert [(row.from_status, row.to_status) for row in rows] == [
        (None, LoanStatus.PENDING),
        (LoanStatus.PENDING, LoanStatus.REJECTED),
    ]
    assert rows[1].reason == "Duplicate application"


async def test_refused_action_writes_no_event(client: httpx.AsyncClient) -> None:
    loan_id = await loan_in(client, LoanStatus.REJECTED)

    await act(client, loan_id, LoanAction.APPROVE)

    events = (await client.get(f"/api/loans/{loan_id}/events")).json()
    assert [e["to_status"] for e in events] == ["pending", "rejected"]


async def test_events_of_unknown_loan_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/loans/{uuid.uuid4()}/events")).status_code == 404


@pytest.mark.parametrize(
    "body", [{"reason": "x" * 501}, {"reason": ""}, {"reason": 5}, {"note": "hi"}]
)
async def test_bad_reason_is_422(client: httpx.AsyncClient, body: dict[str, object]) -> None:
    loan_id = (await create(client))["id"]

    response = await act(client, loan_id, LoanAction.APPROVE, json=body)

    assert response.status_code == 422
    assert (await client.get(f"/api/loans/{loan_id}")).json()["status"] == "pending"


async def test_disbursing_records_when_the_money_went_out(client: httpx.AsyncClient) -> None:
    loan_id = await loan_in(client, LoanStatus.APPROVED)
    assert (await client.get(f"/api/loans/{loan_id}")).json()["disbursed_at"] is None

    disbursed = (await act(client, loan_id, LoanAction.DISBURSE)).json()

    assert disbursed["disbursed_at"] is not None
    assert disbursed["disbursed_at"] == disbursed["updated_at"]


async def test_every_transition_moves_updated_at(client: httpx.AsyncClient) -> None:
    loan = await create(client)
    approved = (await act(client, loan["id"], LoanAction.APPROVE)).json()
    disbursed = (await act(client, loan["id"], LoanAction.DISBURSE)).json()

    assert loan["updated_at"] < approved["updated_at"] < disbursed["updated_at"]
    assert disbursed["created_at"] == loan["created_at"]


async def test_etag_is_the_version_and_grows_with_each_change(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/loans", json=NEW_LOAN)
    loan_id = created.json()["id"]
    fetched = await client.get(f"/api/loans/{loan_id}")
    approved = await act(client, loan_id, LoanAction.APPROVE)

    assert created.headers["etag"] == fetched.headers["etag"] == '"1"'
    assert approved.headers["etag"] == '"2"'


async def test_if_match_with_current_etag_applies_the_action(client: httpx.AsyncClient) -> None:
    loan_id = (await create(client))["id"]

    response = await act(client, loan_id, LoanAction.APPROVE, headers={"If-Match": '"1"'})

    assert response.status_code == 200


@pytest.mark.parametrize("if_match", ['"1"', 'W/"2"', "2", "garbage", '"0", "1"'])
async def test_if_match_with_stale_or_unusable_etag_is_412(
    client: httpx.AsyncClient, if_match: str
) -> None:
    loan_id = (await create(client))["id"]
    await act(client, loan_id, LoanAction.APPROVE)

    response = await act(client, loan_id, LoanAction.DISBURSE, headers={"If-Match": if_match})

    assert response.status_code == 412
    assert response.headers["etag"] == '"2"'
    assert response.json()["title"] == "Loan changed"
    assert (await client.get(f"/api/loans/{loan_id}")).json()["status"] == "approved"


@pytest.mark.parametrize(
    "if_match", ['"2' + "0" * 10 + '"', '"\u00b2"'], ids=["eleven-digits", "superscript-two"]
)
async def test_if_match_with_a_tag_no_version_can_have_is_412(
    client: httpx.AsyncClient, if_match: str
) -> None:
    loan_id = (await create(client))["id"]
    await act(client, loan_id, LoanAction.APPROVE)

    response = await act(
        client, loan_id, LoanAction.DISBURSE, headers=[("If-Match", if_match.encode("latin-1"))]
    )

    assert response.status_code == 412


@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
async def test_entity_tags_longer_than_the_bound_are_422_naming_the_header(
    client: httpx.AsyncClient, header: str
) -> None:
    loan_id = (await create(client))["id"]
    tags = '"' + "9" * 5000 + '"'

    if header == "If-Match":
        response = await act(client, loan_id, LoanAction.APPROVE, headers={header: tags})
    else:
        response = await client.get(f"/api/loans/{loan_id}", headers={header: tags})

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["location"], error["type"]) == (
        header.lower(),
        "header",
        "too_long",
    )
    assert (await client.get(f"/api/loans/{loan_id}")).json()["status"] == "pending"


async def test_if_match_star_or_list_containing_current_etag_applies(
    client: httpx.AsyncClient,
) -> None:
    loan_id = (await create(client))["id"]

    assert (await act(client, loan_id, "approve", headers={"If-Match": "*"})).status_code == 200
    disbursed = await act(client, loan_id, LoanAction.DISBURSE, headers={"If-Match": '"7", "2"'})
    assert disbursed.status_code == 200


async def test_if_none_match_with_current_etag_is_304(client: httpx.AsyncClient) -> None:
    loan_id = (await create(client))["id"]

    unchanged = await client.get(f"/api/loans/{loan_id}", headers={"If-None-Match": '"1"'})
    await act(client, loan_id, LoanAction.APPROVE)
    changed = await client.get(f"/api/loans/{loan_id}", headers={"If-None-Match": '"1"'})

    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert changed.status_code == 200
    assert changed.json()["status"] == "approved"


async def test_stats_see_a_transition_at_once(client: httpx.AsyncClient) -> None:
    loan_id = (await create(client))["id"]

    await act(client, loan_id, LoanAction.APPROVE)

    by_status = (await client.get("/api/stats")).json()["by_status"]
    assert by_status["pending"] == 0
    assert by_status["approved"] == 1


async def test_list_filters_by_status(client: httpx.AsyncClient) -> None:
    pending = (await create(client))["id"]
    approved = await loan_in(client, LoanStatus.APPROVED)

    listed = (await client.get("/api/loans", params={"status": "approved"})).json()

    assert [loan["id"] for loan in listed] == [approved]
    assert pending not in [loan["id"] for loan in listed]


async def test_list_filters_by_currency_case_insensitively(client: httpx.AsyncClient) -> None:
    await create(client)
    usd = (await client.post("/api/loans", json={**NEW_LOAN, "currency": "USD"})).json()["id"]

    listed = (await client.get("/api/loans", params={"currency": "usd"})).json()

    assert [loan["id"] for loan in listed] == [usd]


async def test_list_filters_by_borrower_and_combines_filters(client: httpx.AsyncClient) -> None:
    mine = (await client.post("/api/loans", json={**NEW_LOAN, "borrower_id": "me"})).json()["id"]
    await client.post("/api/loans", json={**NEW_LOAN, "borrower_id": "someone_else"})
    mine_approved = (
        await client.post("/api/loans", json={**NEW_LOAN, "borrower_id": "me"})
    ).json()["id"]
    await act(client, mine_approved, LoanAction.APPROVE)

    listed = (await client.get("/api/loans", params={"borrower_id": "me"})).json()
    approved = (
        await client.get("/api/loans", params={"borrower_id": "me", "status": "approved"})
    ).json()

    assert {loan["id"] for loan in listed} == {mine, mine_approved}
    assert [loan["id"] for loan in approved] == [mine_approved]


@pytest.mark.parametrize(("name", "value"), [("status", "lost"), ("currency", "XQZ")])
async def test_list_with_unknown_filter_value_is_422(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    response = await client.get("/api/loans", params={name: value})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == name
    assert response.json()["errors"][0]["location"] == "query"


async def test_two_concurrent_approvals_give_one_success_and_one_409(
    committed_client: httpx.AsyncClient,
) -> None:
    loan_id = (await create(committed_client))["id"]

    responses = await asyncio.gather(
        act(committed_client, loan_id, LoanAction.APPROVE),
        act(committed_client, loan_id, LoanAction.APPROVE),
    )

    assert sorted(response.status_code for response in responses) == [200, 409]
    events = (await committed_client.get(f"/api/loans/{loan_id}/events")).json()
    assert [e["to_status"] for e in events] == ["pending", "approved"]


async def test_twenty_concurrent_actions_leave_a_coherent_history(
    committed_client: httpx.AsyncClient,
) -> None:
    loan_id = (await create(committed_client))["id"]
    actions = [action for action in LoanAction for _ in range(4)]
    random.Random(6).shuffle(actions)

    responses = await asyncio.gather(*(act(committed_client, loan_id, a) for a in actions))

    assert {response.status_code for response in responses} <= {200, 409}
    succeeded = [a for a, r in zip(actions, responses, strict=True) if r.status_code == 200]
    events = (await committed_client.get(f"/api/loans/{loan_id}/events")).json()
    assert len(events) == 1 + len(succeeded)
    assert events[0]["from_status"] is None
    for previous, event in itertools.pairwise(events):
        assert event["from_status"] == previous["to_status"]
        assert any(
            t.target == event["to_status"] and event["from_status"] in t.sources
            for t in TRANSITIONS.values()
        )
    loan = (await committed_client.get(f"/api/loans/{loan_id}")).json()
    assert loan["status"] == events[-1]["to_status"]
    assert (await committed_client.get(f"/api/loans/{loan_id}")).headers["etag"] == (
        f'"{len(events)}"'
    )


async def test_schedule_counts_from_disbursement_once_disbursed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = (await client.post("/api/loans", json={**NEW_LOAN, "interest_rate_apr": 12})).json()[
        "id"
    ]
    await session.execute(
        update(Loan)
        .where(Loan.id == uuid.UUID(loan_id))
        .values(created_at=datetime(2025, 1, 31, 12, tzinfo=UTC), updated_at=func.now())
    )
    before = (await client.get(f"/api/loans/{loan_id}/schedule")).json()
    await act(client, loan_id, LoanAction.APPROVE)
    disbursed = (await act(client, loan_id, LoanAction.DISBURSE)).json()

    after = (await client.get(f"/api/loans/{loan_id}/schedule")).json()

    assert before["start_date"] == "2025-01-31"
    assert before["instalments"][0]["due_date"] == "2025-02-28"
    assert after["start_date"] == disbursed["disbursed_at"][:10]
