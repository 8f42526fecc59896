"""The cap on new Idempotency-Keys per client: beyond it a 429, and nothing stored or done."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from branchloans.app import create_app
from branchloans.auth.models import Scope
from branchloans.auth.service import create_api_key
from branchloans.idempotency.models import IdempotencyKey
from branchloans.loans.models import Loan
from tests.support import DatabaseInTransaction, in_transaction, make_settings, started_client

LOAN = {"borrower_id": "usr_cap", "amount": 100, "currency": "KES"}
CAP = 3


@pytest.fixture
async def capped_app(database_url: str) -> FastAPI:
    return create_app(
        make_settings(
            database_url,
            auth_required=True,
            idempotency_keys_per_client=CAP,
            idempotency_key_window_seconds=60,
            idempotency_purge_interval=0,
        )
    )


@pytest.fixture
async def capped_client(
    capped_app: FastAPI, connection: AsyncConnection
) -> AsyncIterator[httpx.AsyncClient]:
    async with started_client(capped_app, connection) as http:
        yield http


async def new_key(capped_app: FastAPI, connection: AsyncConnection) -> dict[str, str]:
    database: DatabaseInTransaction = in_transaction(capped_app, connection)
    key = await create_api_key(database, f"cap-{uuid.uuid4().hex[:8]}", tuple(Scope))
    return {"Authorization": f"Bearer {key}"}


async def post(client: httpx.AsyncClient, auth: dict[str, str], key: str) -> httpx.Response:
    return await client.post("/api/loans", json=LOAN, headers={**auth, "Idempotency-Key": key})


async def test_a_new_key_beyond_the_cap_is_429_and_creates_nothing(
    capped_app: FastAPI,
    capped_client: httpx.AsyncClient,
    connection: AsyncConnection,
    session: AsyncSession,
) -> None:
    auth = await new_key(capped_app, connection)
    for number in range(CAP):
        assert (await post(capped_client, auth, f"key-{number}")).status_code == 201

    refused = await post(capped_client, auth, "one-too-many")

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert body["title"] == "Too many Idempotency-Keys"
    assert (body["limit"], body["window_seconds"]) == (CAP, 60)
    assert await session.scalar(select(func.count()).select_from(Loan)) == CAP
    assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == CAP


async def test_retries_of_stored_keys_still_replay_at_the_cap(
    capped_app: FastAPI, capped_client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    auth = await new_key(capped_app, connection)
    firsts = [await post(capped_client, auth, f"key-{number}") for number in range(CAP)]

    retry = await post(capped_client, auth, "key-0")

    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == firsts[0].content


async def test_the_cap_counts_each_client_apart(
    capped_app: FastAPI, capped_client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    busy = await new_key(capped_app, connection)
    other = await new_key(capped_app, connection)
    for number in range(CAP):
        await post(capped_client, busy, f"key-{number}")

    assert (await post(capped_client, busy, "more")).status_code == 429
    assert (await post(capped_client, other, "key-0")).status_code == 201
    # Writes without a key are not counted.
    unkeyed = await capped_client.post("/api/loans", json=LOAN, headers=busy)
    assert unkeyed.status_code == 201


async def test_keys_older_than_the_window_are_not_counted(
    capped_app: FastAPI,
    capped_client: httpx.AsyncClient,
    connection: AsyncConnection,
    session: AsyncSession,
) -> None:
    auth = await new_key(capped_app, connection)
    for number in range(CAP):
        await post(capped_client, auth, f"key-{number}")
    await session.execute(
        update(IdempotencyKey).values(created_at=func.now() - timedelta(minutes=1))
    )

    assert (await post(capped_client, auth, "after-the-window")).status_code == 201
