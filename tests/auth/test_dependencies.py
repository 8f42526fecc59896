"""API keys over HTTP: who may call what, and what they leave behind."""

import hashlib
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.auth.models import ApiKey, Scope
from branchloans.auth.service import create_api_key, revoke_api_key
from branchloans.db import Queries
from branchloans.loans.models import LoanEvent
from tests.support import DatabaseInTransaction

LOAN = {"borrower_id": "usr_auth", "amount": 300, "currency": "USD"}
ALL_SCOPES = list(Scope)


async def new_key(database: Queries, *scopes: Scope, name: str | None = None) -> str:
    return await create_api_key(database, name or f"client-{uuid.uuid4().hex[:8]}", scopes)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_request_without_a_key_is_401_with_a_bearer_challenge(
    secured_client: httpx.AsyncClient,
) -> None:
    response = await secured_client.get("/api/loans")

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="branchloans"'


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer blk_000000000000_notakey",
        "Bearer nonsense",
        "Bearer blk_",
        "Basic dXNlcjpwYXNz",
    ],
)
async def test_unknown_or_malformed_key_is_401(
    secured_client: httpx.AsyncClient, authorization: str
) -> None:
    response = await secured_client.get("/api/loans", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="branchloans"')


async def test_key_with_a_wrong_secret_is_401(
    secured_client: httpx.AsyncClient, database: DatabaseInTransaction
) -> None:
    key = await new_key(database, Scope.LOANS_READ)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")

    response = await secured_client.get("/api/loans", headers=bearer(forged))

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_revoked_key_is_401(
    secured_client: httpx.AsyncClient, database: DatabaseInTransaction
) -> None:
    key = await new_key(database, Scope.LOANS_READ, name="leaving-app")
    assert (await secured_client.get("/api/loans", headers=bearer(key))).status_code == 200

    assert await revoke_api_key(database, "leaving-app")

    assert (await secured_client.get("/api/loans", headers=bearer(key))).status_code == 401


@pytest.mark.parametrize("path", ["/api/loans", "/api/stats"])
async def test_read_scope_reads(
    secured_client: httpx.AsyncClient,
    path: str,
    database: DatabaseInTransaction,
) -> None:
    key = await new_key(database, Scope.LOANS_READ)

    assert (await secured_client.get(path, headers=bearer(key))).status_code == 200


async def test_read_only_key_cannot_create_and_is_told_which_scope(
    secured_client: httpx.AsyncClient, database: DatabaseInTransaction
) -> None:
    key = await new_key(database, Scope.LOANS_READ)

    response = await secured_client.post("/api/loans", json=LOAN, headers=bearer(key))

    assert response.status_code == 403
    assert response.json()["required_scope"] == "loans:write"
    assert 'scope="loans:write"' in response.headers["www-authenticate"]


async def test_write_key_creates_but_cannot_read_or_manage(
    secured_client: httpx.AsyncClient, database: DatabaseInTransaction
) -> None:
    key = await new_key(database, Scope.LOANS_WRITE)

    created = await secured_client.post("/api/loans", json=LOAN, headers=bearer(key))
    loan_id = created.json()["id"]
    read = await secured_client.get(f"/api/loans/{loan_id}", headers=bearer(key))
    approve = await secured_client.post(f"/api/loans/{loan_id}/approve", headers=bearer(key))

    assert created.status_code == 201
    assert (read.status_code, read.json()["required_scope"]) == (403, "loans:read")
    assert (approve.status_code, approve.json()["required_scope"]) == (403, "loans:manage")


async def test_manage_scope_takes_actions_and_events_need_read(
    secured_client: httpx.AsyncClient, database: DatabaseInTransaction
) -> None:
    writer = await new_key(database, Scope.LOANS_WRITE)
    manager = await new_key(database, Scope.LOANS_MANAGE)
    loan_id = (await secured_client.post("/api/loans", json=LOAN, headers=bearer(writer))).json()[
        "id"
    ]

    approved = await secured_client.post(f"/api/loans/{loan_id}/approve", headers=bearer(manager))
    events = await secured_client.get(f"/api/loans/{loan_id}/events", headers=bearer(manager))

    assert approved.status_code == 200
    assert events.status_code == 403


@pytest.mark.parametrize("path", ["/health", "/liveness", "/readiness", "/openapi.json"])
async def test_probes_and_docs_stay_open(secured_client: httpx.AsyncClient, path: str) -> None:
    assert (await secured_client.get(path)).status_code == 200


async def test_events_record_the_key_name_as_actor(
    secured_client: httpx.AsyncClient, session: AsyncSession, database: DatabaseInTransaction
) -> None:
    key = await new_key(database, *ALL_SCOPES, name="clerk-app")
    loan_id = (await secured_client.post("/api/loans", json=LOAN, headers=bearer(key))).json()["id"]
    await secured_client.post(f"/api/loans/{loan_id}/approve", headers=bearer(key))

    actors = (
        await session.scalars(
            select(LoanEvent.actor).where(LoanEvent.loan_id == uuid.UUID(loan_id))
        )
    ).all()
    assert actors == ["clerk-app", "clerk-app"]


async def test_idempotency_keys_belong_to_one_client(
    secured_client: httpx.AsyncClient, database: DatabaseInTransaction
) -> None:
    first = await new_key(database, Scope.LOANS_WRITE)
    second = await new_key(database, Scope.LOANS_WRITE)
    same_key = {"Idempotency-Key": "order-1"}

    mine = await secured_client.post("/api/loans", json=LOAN, headers=bearer(first) | same_key)
    mine_again = await secured_client.post(
        "/api/loans", json=LOAN, headers=bearer(first) | same_key
    )
    theirs = await secured_client.post("/api/loans", json=LOAN, headers=bearer(second) | same_key)

    assert mine_again.json()["id"] == mine.json()["id"]
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]


async def test_only_the_hash_of_a_key_is_stored(
    session: AsyncSession, database: DatabaseInTransaction
) -> None:
    key = await new_key(database, Scope.LOANS_READ, name="hashed")

    row = await session.scalar(select(ApiKey).where(ApiKey.name == "hashed"))

    assert key.startswith("blk_")
    assert row is not None
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (row.id, row.key_hash)
    assert len(key) > 40


async def test_open_development_api_needs_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/loans", json=LOAN)).status_code == 201
