"""X-Request-ID: the caller's sane id is kept, anything else replaced by a fresh UUID4."""

import uuid

import httpx
import pytest

from branchloans.request_ids import MAX_REQUEST_ID_LENGTH, new_request_id


async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/liveness", headers={"X-Request-ID": "req-2025.11.06_a1-B"})

    assert response.headers["x-request-id"] == "req-2025.11.06_a1-B"


async def test_a_request_without_id_gets_a_uuid4(client: httpx.AsyncClient) -> None:
    response = await client.get("/liveness")

    assert uuid.UUID(response.headers["x-request-id"]).version == 4


async def test_each_request_gets_its_own_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/liveness")
    second = await client.get("/liveness")

    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    "offered",
    [
        "x" * (MAX_REQUEST_ID_LENGTH + 1),
        "two words",
        'quote"d',
        "semi;colon",
        "<script>",
        "line\tbreak",
        "caf\xe9",
        "../../etc/passwd",
        "a/b",
        ".hidden",
        "-flag",
        "key=value",
        "a:b",
        "a+b",
    ],
    ids=[
        "too-long",
        "space",
        "quote",
        "semicolon",
        "angle-brackets",
        "tab",
        "non-ascii",
        "path",
        "slash",
        "leading-dot",
        "leading-hyphen",
        "equals",
        "colon",
        "plus",
    ],
)
async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient, offered: str) -> None:
    response = await client.get("/liveness", headers=[(b"X-Request-ID", offered.encode("latin-1"))])

    returned = response.headers["x-request-id"]
    assert returned != offered
    assert uuid.UUID(returned).version == 4


async def test_the_longest_sane_id_is_kept(client: httpx.AsyncClient) -> None:
    offered = "a" * MAX_REQUEST_ID_LENGTH

    response = await client.get("/liveness", headers={"X-Request-ID": offered})

    assert response.headers["x-request-id"] == offered


async def test_a_problem_body_carries_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here", headers={"X-Request-ID": "trace-404"})

    assert response.status_code == 404
    assert response.json()["request_id"] == "trace-404"
    assert response.headers["x-request-id"] == "trace-404"


async def test_a_validation_problem_carries_the_generated_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/loans", json={"amount": -1})

    assert response.status_code == 422
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_a_body_refused_before_reading_carries_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/loans",
        content=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json", "X-Request-ID": "too-big"},
    )

    assert response.status_code == 413
    assert response.json()["request_id"] == "too-big"
    assert response.headers["x-request-id"] == "too-big"


async def test_a_database_outage_problem_carries_the_request_id(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.get("/api/loans", headers={"X-Request-ID": "db-gone"})

    assert response.status_code == 503
    assert response.json()["request_id"] == "db-gone"


def test_generated_ids_are_distinct_rfc_4122_uuid4s() -> None:
    ids = [new_request_id() for _ in range(10_000)]

    parsed = [uuid.UUID(request_id) for request_id in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids
    assert len(set(ids)) == len(ids)


async def test_an_unsafe_request_id_is_not_stored_with_the_loan_events(
    client: httpx.AsyncClient,
) -> None:
    offered = "../../etc/passwd"
    created = await client.post(
        "/api/loans",
        json={"borrower_id": "usr_1", "amount": 100, "currency": "KES"},
        headers={"X-Request-ID": offered},
    )

    used = created.headers["x-request-id"]
    events = (await client.get(f"/api/loans/{created.json()['id']}/events")).json()
    assert uuid.UUID(used).version == 4
    assert [event["request_id"] for event in events] == [used]


async def test_a_safe_request_id_is_stored_with_the_loan_events(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        "/api/loans",
        json={"borrower_id": "usr_1", "amount": 100, "currency": "KES"},
        headers={"X-Request-ID": "checkout-7.retry_2"},
    )

    events = (await client.get(f"/api/loans/{created.json()['id']}/events")).json()
    assert created.headers["x-request-id"] == "checkout-7.retry_2"
    assert [event["request_id"] for event in events] == ["checkout-7.retry_2"]
