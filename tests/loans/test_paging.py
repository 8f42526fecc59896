"""GET /api/loans a page at a time: limits, Link headers, cursors and filters."""

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from branchloans.app import create_app
from branchloans.loans.cursor import CursorCodec, Position
from branchloans.loans.listing import LoanFilter
from branchloans.loans.models import Loan, LoanStatus
from tests.support import TEST_CURSOR_KEY, make_settings, started_client

NEXT_LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')
T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
# The key the tests' app signs cursors with.
CODEC = CursorCodec([TEST_CURSOR_KEY.encode()])


async def insert_loans(
    session: AsyncSession, count: int, *, at: datetime = T0, **fields: Any
) -> list[uuid.UUID]:
    """`count` loans, all created at `at`, written straight to the table."""
    rows = [
        {
            "id": uuid.uuid4(),
            "borrower_id": "usr_pager",
            "amount": Decimal("100.00"),
            "currency": "KES",
            "created_at": at,
            "updated_at": at,
            **fields,
        }
        for _ in range(count)
    ]
    await session.execute(insert(Loan), rows)
    return [row["id"] for row in rows]


async def list_order(session: AsyncSession, *conditions: Any) -> list[str]:
    """The ids of the matching loans in list order, as the database sorts them."""
    query = select(Loan.id).where(*conditions).order_by(Loan.created_at.desc(), Loan.id.desc())
    return [str(loan_id) for loan_id in (await session.scalars(query)).all()]


def next_url(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = NEXT_LINK.match(link)
    assert match, link
    return match["url"]


async def walk(client: httpx.AsyncClient, url: str) -> tuple[list[str], list[int]]:
    """Follow the Link headers from `url` to the last page: every id, and each page's size."""
    ids: list[str] = []
    sizes: list[int] = []
    next_page: str | None = url
    while next_page is not None:
        response = await client.get(next_page)
        assert response.status_code == 200, response.text
        page = [loan["id"] for loan in response.json()]
        ids += page
        sizes.append(len(page))
        next_page = next_url(response)
    return ids, sizes


async def test_default_page_is_100_loans_with_a_link_to_the_rest(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 101)

    response = await client.get("/api/loans")

    assert len(response.json()) == 100
    assert next_url(response) is not None


@pytest.mark.parametrize("limit", [1, 1000])
async def test_limit_at_its_bounds_is_accepted(client: httpx.AsyncClient, limit: int) -> None:
    response = await client.get("/api/loans", params={"limit": limit})

    assert response.status_code == 200


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "ten", "1.5"])
async def test_limit_outside_1_to_1000_is_422_naming_limit(
    client: httpx.AsyncClient, limit: str
) -> None:
    response = await client.get("/api/loans", params={"limit": limit})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == ["limit"]


async def test_last_page_has_no_link(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await insert_loans(session, 3)

    response = await client.get("/api/loans", params={"limit": 3})

    assert len(response.json()) == 3
    assert "link" not in response.headers


async def test_walking_the_pages_yields_every_loan_once_in_list_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # Most loans share a creation time with others, so the id alone orders them there.
    for hours in (0, 1, 2):
        await insert_loans(session, 9, at=T0 + timedelta(hours=hours))
    await insert_loans(session, 1, at=T0 + timedelta(microseconds=1))

    ids, sizes = await walk(client, "/api/loans?limit=4")

    assert ids == await list_order(session)
    assert sizes == [4, 4, 4, 4, 4, 4, 4]


async def test_link_keeps_the_path_filters_and_limit_and_adds_a_cursor(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 3, status=LoanStatus.PENDING)

    response = await client.get(
        "/api/loans", params={"status": "pending", "currency": "kes", "limit": 2}
    )

    url = urlsplit(next_url(response) or "")
    assert url.path == "/api/loans"
    query = parse_qs(url.query)
    assert query.keys() == {"status", "currency", "limit", "cursor"}
    assert (query["status"], query["currency"], query["limit"]) == (["pending"], ["kes"], ["2"])


async def test_link_replaces_the_cursor_of_the_request(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 5)
    second_url = next_url(await client.get("/api/loans?limit=2")) or ""

    third_url = next_url(await client.get(second_url)) or ""

    sent, announced = (parse_qs(urlsplit(url).query)["cursor"] for url in (second_url, third_url))
    assert len(announced) == 1
    assert announced != sent


async def test_pages_of_a_filtered_list_hold_only_matching_loans(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    for hours, status in enumerate([LoanStatus.PENDING, LoanStatus.REJECTED] * 4):
        await insert_loans(session, 3, at=T0 + timedelta(hours=hours), status=status)
    await insert_loans(session, 4, currency="INR", status=LoanStatus.REJECTED)

    ids, _ = await walk(client, "/api/loans?status=rejected&currency=KES&limit=5")

    assert ids == await list_order(
        session, Loan.status == LoanStatus.REJECTED, Loan.currency == "KES"
    )
    assert len(ids) == 12


async def test_borrower_filter_pages_through_that_borrowers_loans(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 5, borrower_id="usr_many")
    await insert_loans(session, 5, borrower_id="usr_other")

    ids, sizes = await walk(client, "/api/loans?borrower_id=usr_many&limit=2")

    assert ids == await list_order(session, Loan.borrower_id == "usr_many")
    assert sizes == [2, 2, 1]


async def test_creation_window_includes_its_start_and_excludes_its_end(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    at_start = await insert_loans(session, 1, at=T0)
    inside = await insert_loans(session, 1, at=T0 + timedelta(minutes=30))
    await insert_loans(session, 1, at=T0 + timedelta(hours=1))
    await insert_loans(session, 1, at=T0 - timedelta(microseconds=1))

    response = await client.get(
        "/api/loans",
        params={
            "created_after": "2025-06-01T09:00:00Z",
            "created_before": "2025-06-01T11:00:00+01:00",
        },
    )

    assert [loan["id"] for loan in response.json()] == [str(inside[0]), str(at_start[0])]


async def test_creation_window_combines_with_paging(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    for hours in range(6):
        await insert_loans(session, 2, at=T0 + timedelta(hours=hours))

    ids, _ = await walk(
        client,
        "/api/loans?created_after=2025-06-01T10:00:00Z&created_before=2025-06-01T13:00:00Z&limit=4",
    )

    assert ids == await list_order(
        session,
        Loan.created_at >= T0 + timedelta(hours=1),
        Loan.created_at < T0 + timedelta(hours=4),
    )
    assert len(ids) == 6


@pytest.mark.parametrize("field", ["created_after", "created_before"])
async def test_creation_time_without_offset_is_422(client: httpx.AsyncClient, field: str) -> None:
    response = await client.get("/api/loans", params={field: "2025-06-01T09:00:00"})

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["type"]) == (field, "missing_offset")


async def test_creation_time_that_is_not_a_time_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/loans", params={"created_after": "yesterday"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "created_after"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_after", "0001-01-01T00:00:00+14:00"),
        ("created_before", "9999-12-31T23:59:59-14:00"),
    ],
)
async def test_creation_time_beyond_utc_range_is_422_naming_the_field(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    response = await client.get("/api/loans", params={field: value})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert (error["field"], error["location"], error["type"]) == (field, "query", "out_of_range")


async def test_creation_time_at_the_edge_of_utc_range_is_accepted(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    loan = await insert_loans(session, 1)

    response = await client.get(
        "/api/loans",
        params={
            "created_after": "0001-01-01T00:00:00-14:00",
            "created_before": "9999-12-31T23:59:59+14:00",
        },
    )

    assert response.status_code == 200
    assert str(loan[0]) in [found["id"] for found in response.json()]


async def test_altered_cursor_is_422_problem_naming_cursor(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 3)
    cursor = parse_qs(urlsplit(next_url(await client.get("/api/loans?limit=1")) or "").query)[
        "cursor"
    ][0]
    altered = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]

    response = await client.get("/api/loans", params={"cursor": altered})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {
            "field": "cursor",
            "location": "query",
            "message": "cursor was altered, or is not from this API;"
            " copy it unchanged from a Link header",
            "type": "invalid_cursor",
        }
    ]


@pytest.mark.parametrize("cursor", ["", "x", "%%%", "A" * 39, "A" * 2000])
async def test_cursor_that_is_no_cursor_is_422_naming_cursor(
    client: httpx.AsyncClient, cursor: str
) -> None:
    response = await client.get("/api/loans", params={"cursor": cursor})

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["cursor"]


def cursor_of(response: httpx.Response) -> str:
    return parse_qs(urlsplit(next_url(response) or "").query)["cursor"][0]


async def test_cursor_minted_without_the_key_is_422_naming_cursor(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 3)
    # Anyone can pack a position; only the API's key signs it.
    forged = CursorCodec([b"guessed-key"]).encode(
        Position(T0, uuid.UUID(int=2**128 - 1)), LoanFilter().canonical()
    )

    response = await client.get("/api/loans", params={"cursor": forged})

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["type"]) == ("cursor", "invalid_cursor")


@pytest.mark.parametrize(
    ("made_for", "used_with"),
    [
        ({"status": "pending"}, {"status": "approved"}),
        ({"status": "pending"}, {}),
        ({}, {"currency": "KES"}),
        ({"borrower_id": "usr_pager"}, {"borrower_id": "usr_other"}),
        ({"created_before": "2026-01-01T00:00:00Z"}, {"created_before": "2027-01-01T00:00:00Z"}),
    ],
)
async def test_cursor_used_with_other_filters_is_422_naming_cursor(
    client: httpx.AsyncClient,
    session: AsyncSession,
    made_for: dict[str, str],
    used_with: dict[str, str],
) -> None:
    await insert_loans(session, 3, status=LoanStatus.PENDING)
    cursor = cursor_of(await client.get("/api/loans", params={**made_for, "limit": 1}))

    response = await client.get("/api/loans", params={**used_with, "cursor": cursor})

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "cursor",
            "location": "query",
            "message": "cursor was made for other filters; send it with the status, currency,"
            " borrower_id, created_after and created_before of the request whose Link header"
            " gave it",
            "type": "invalid_cursor",
        }
    ]


async def test_cursor_accepts_the_same_filters_spelled_otherwise_and_another_limit(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 3)
    cursor = cursor_of(
        await client.get(
            "/api/loans", params={"created_before": "2026-01-01T00:00:00Z", "limit": 1}
        )
    )

    response = await client.get(
        "/api/loans",
        params={"created_before": "2026-01-01T01:00:00+01:00", "limit": 5, "cursor": cursor},
    )

    assert response.status_code == 200
    assert len(response.json()) == 2


async def test_after_a_key_rotation_old_cursors_read_and_new_ones_use_the_new_key(
    database_url: str, connection: AsyncConnection, session: AsyncSession
) -> None:
    await insert_loans(session, 3)
    new_key = "n" * 40
    rotated = create_app(
        make_settings(database_url, cursor_signing_keys=f"{new_key},{TEST_CURSOR_KEY}")
    )
    old_cursor = CODEC.encode(Position(T0, uuid.UUID(int=2**128 - 1)), LoanFilter().canonical())

    async with started_client(rotated, connection) as http:
        resumed = await http.get("/api/loans", params={"cursor": old_cursor, "limit": 1})

    assert resumed.status_code == 200
    fresh = cursor_of(resumed)
    signed_by_new = CursorCodec([new_key.encode()])
    position = signed_by_new.decode(fresh, LoanFilter().canonical())
    assert str(position.id) == resumed.json()[0]["id"]
    with pytest.raises(ValueError, match="not from this API"):
        CODEC.decode(fresh, LoanFilter().canonical())


async def test_cursor_past_the_oldest_loan_gives_an_empty_last_page(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 2)
    position = Position(datetime(2000, 1, 1, tzinfo=UTC), uuid.UUID(int=0))
    cursor = CODEC.encode(position, LoanFilter().canonical())

    response = await client.get("/api/loans", params={"cursor": cursor})

    assert response.json() == []
    assert "link" not in response.headers


async def test_page_after_new_loans_arrive_neither_repeats_nor_skips(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await insert_loans(session, 4)
    first = await client.get("/api/loans?limit=2")
    await insert_loans(session, 3, at=T0 + timedelta(days=1))

    second = await client.get(next_url(first) or "")

    older = await list_order(session, Loan.created_at == T0)
    assert [loan["id"] for loan in first.json() + second.json()] == older


async def test_openapi_documents_paging_parameters_and_the_link_header(
    client: httpx.AsyncClient,
) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/api/loans"]["get"]

    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert {"limit", "cursor", "created_after", "created_before", "status"} <= parameters.keys()
    assert parameters["limit"]["schema"]["maximum"] == 1000
    assert "Link" in operation["responses"]["200"]["headers"]
