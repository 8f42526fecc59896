"""Idempotency keys over HTTP: retries replay the first answer and never act twice."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import Request
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.config import Settings
from branchloans.idempotency.models import IdempotencyKey
from branchloans.idempotency.service import purge_expired_keys, run_once
from branchloans.loans.models import Loan, LoanEvent
from branchloans.state import DatabaseDep
from tests.support import DatabaseInTransaction, make_settings, serving

LOAN = {"borrower_id": "usr_retry", "amount": 1200.50, "currency": "INR", "term_months": 6}


async def post_loan(
    client: httpx.AsyncClient, key: str | None, body: dict[str, Any] = LOAN
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post("/api/loans", json=body, headers=headers)


async def count(session: AsyncSession, model: type[Any]) -> int:
    return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_retry_with_the_same_key_replays_the_first_answer(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    first = await post_loan(client, "key-1")
    retry = await post_loan(client, "key-1")

    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["etag"] == first.headers["etag"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count(session, Loan) == 1
    assert await count(session, LoanEvent) == 1


async def test_requests_without_a_key_act_each_time(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await post_loan(client, None)
    await post_loan(client, None)

    assert await count(session, Loan) == 2
    assert await count(session, IdempotencyKey) == 0


async def test_different_keys_create_different_loans(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    first = await post_loan(client, "key-a")
    second = await post_loan(client, "key-b")

    assert first.json()["id"] != second.json()["id"]
    assert await count(session, Loan) == 2


async def test_same_key_with_a_different_body_is_422_and_acts_not(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await post_loan(client, "key-1")

    response = await post_loan(client, "key-1", {**LOAN, "amount": 999})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert await count(session, Loan) == 1


async def test_same_key_on_another_route_is_422(client: httpx.AsyncClient) -> None:
    loan_id = (await post_loan(client, "key-1")).json()["id"]

    response = await client.post(
        f"/api/loans/{loan_id}/approve", headers={"Idempotency-Key": "key-1"}
    )

    assert response.status_code == 422
    assert (await client.get(f"/api/loans/{loan_id}")).json()["status"] == "pending"


async def test_validation_failure_is_not_stored_so_a_corrected_retry_goes_through(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    refused = await post_loan(client, "key-1", {**LOAN, "currency": "XQZ"})
    corrected = await post_loan(client, "key-1")

    assert refused.status_code == 422
    assert corrected.status_code == 201
    assert "idempotent-replayed" not in corrected.headers
    assert await count(session, Loan) == 1


async def test_retried_action_replays_instead_of_conflicting(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = (await post_loan(client, None)).json()["id"]
    url = f"/api/loans/{loan_id}/approve"

    first = await client.post(url, headers={"Idempotency-Key": "approve-1"})
    retry = await client.post(url, headers={"Idempotency-Key": "approve-1"})
    fresh = await client.post(url, headers={"Idempotency-Key": "approve-2"})

    assert first.status_code == retry.status_code == 200
    assert retry.content == first.content
    assert fresh.status_code == 409
    assert await count(session, LoanEvent) == 2


async def test_conflict_answer_is_stored_and_replayed_with_nothing_changed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = (await post_loan(client, None)).json()["id"]
    await client.post(f"/api/loans/{loan_id}/reject")

    first = await client.post(f"/api/loans/{loan_id}/approve", headers={"Idempotency-Key": "k"})
    retry = await client.post(f"/api/loans/{loan_id}/approve", headers={"Idempotency-Key": "k"})

    assert first.status_code == retry.status_code == 409
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert await count(session, LoanEvent) == 2


async def test_not_found_is_not_stored_and_a_retry_answers_it_again(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    url = f"/api/loans/{uuid.uuid4()}/approve"

    first = await client.post(url, headers={"Idempotency-Key": "nothing-there"})
    retry = await client.post(url, headers={"Idempotency-Key": "nothing-there"})

    assert first.status_code == retry.status_code == 404
    assert "idempotent-replayed" not in retry.headers
    assert await count(session, IdempotencyKey) == 0


async def test_actions_on_random_ids_store_no_keys(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    for number in range(20):
        response = await client.post(
            f"/api/loans/{uuid.uuid4()}/approve", headers={"Idempotency-Key": f"probe-{number}"}
        )
        assert response.status_code == 404

    assert await count(session, IdempotencyKey) == 0


async def test_stale_if_match_answer_is_stored_and_replayed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan_id = (await post_loan(client, None)).json()["id"]
    await client.post(f"/api/loans/{loan_id}/approve")
    headers = {"Idempotency-Key": "stale", "If-Match": '"1"'}

    first = await client.post(f"/api/loans/{loan_id}/disburse", headers=headers)
    retry = await client.post(f"/api/loans/{loan_id}/disburse", headers=headers)

    assert first.status_code == retry.status_code == 412
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert await count(session, IdempotencyKey) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve"])
async def test_malformed_key_is_422_naming_the_header(
    client: httpx.AsyncClient, session: AsyncSession, key: str
) -> None:
    response = await client.post("/api/loans", json=LOAN, headers={"Idempotency-Key": key.encode()})

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["location"], error["field"]) == ("header", "idempotency-key")
    assert await count(session, Loan) == 0


async def test_key_of_255_printable_characters_is_accepted(client: httpx.AsyncClient) -> None:
    assert (await post_loan(client, "~" * 255)).status_code == 201


async def test_expired_key_acts_anew(client: httpx.AsyncClient, session: AsyncSession) -> None:
    first = await post_loan(client, "key-1")
    await session.execute(
        text(
            "UPDATE idempotency_keys SET created_at = now() - interval '2 days',"
            " expires_at = now() - interval '1 day'"
        )
    )

    second = await post_loan(client, "key-1")

    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert await count(session, Loan) == 2


async def test_stored_key_expires_after_the_configured_hours(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await post_loan(client, "key-1")

    lifetime = await session.scalar(text("SELECT expires_at - created_at FROM idempotency_keys"))

    assert lifetime is not None
    assert lifetime.total_seconds() == 24 * 3600


async def _store_keys(session: AsyncSession, expired: int, alive: int) -> None:
    await session.execute(
        text(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, method, path, created_at,"
            " expires_at) SELECT '', 'old-' || n, 'f', 'POST', '/', now() - interval '2 days',"
            " now() - interval '1 day' FROM generate_series(1, :expired) n"
            " UNION ALL SELECT '', 'new-' || n, 'f', 'POST', '/', now(),"
            " now() + interval '1 day' FROM generate_series(1, :alive) n"
        ),
        {"expired": expired, "alive": alive},
    )


async def test_purge_deletes_expired_keys_in_batches_and_keeps_live_ones(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    await _store_keys(session, expired=5, alive=3)

    purged = await purge_expired_keys(database, batch_size=2)

    assert purged == 5
    keys = (await session.scalars(select(IdempotencyKey.key))).all()
    assert sorted(keys) == ["new-1", "new-2", "new-3"]


async def test_purge_stops_after_max_batches(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    await _store_keys(session, expired=5, alive=0)

    assert await purge_expired_keys(database, batch_size=2, max_batches=1) == 2
    assert await count(session, IdempotencyKey) == 3


async def test_server_error_is_not_stored(
    committed_database_url: str, committed_session: AsyncSession
) -> None:
    settings: Settings = make_settings(committed_database_url, idempotency_purge_interval=0)
    calls = 0

    async def install(app: Any) -> None:
        @app.post("/explode")
        async def explode(request: Request, database: DatabaseDep) -> None:
            async def fail() -> Any:
                nonlocal calls
                calls += 1
                raise RuntimeError("boom")

            async with database.transaction() as transaction:
                await run_once(
                    transaction, request, settings, scope="", key="same-key", operation=fail
                )

    async with serving(settings, install=install, raise_app_exceptions=False) as http:
        responses = [await http.post("/explode") for _ in range(2)]

    assert [r.status_code for r in responses] == [500, 500]
    assert calls == 2
    assert await count(committed_session, IdempotencyKey) == 0


async def test_fifty_concurrent_retries_create_one_loan_and_answer_alike(
    committed_client: httpx.AsyncClient, committed_session: AsyncSession
) -> None:
    key = str(uuid.uuid4())

    responses = await asyncio.gather(*(post_loan(committed_client, key) for _ in range(50)))

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 49
    assert await count(committed_session, Loan) == 1
    assert await count(committed_session, LoanEvent) == 1


async def test_concurrent_retries_of_an_action_apply_it_once(
    committed_client: httpx.AsyncClient, committed_session: AsyncSession
) -> None:
    loan_id = (await post_loan(committed_client, None)).json()["id"]

    responses = await asyncio.gather(
        *(
            committed_client.post(
                f"/api/loans/{loan_id}/approve", headers={"Idempotency-Key": "approve"}
            )
            for _ in range(20)
        )
    )

    assert {r.status_code for r in responses} == {200}
    assert await count(committed_session, LoanEvent) == 2
