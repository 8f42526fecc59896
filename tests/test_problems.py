"""Every error is an RFC 9457 problem document, whatever raised it."""

import httpx
import pytest
from fastapi import FastAPI

from branchloans.app import create_app
from branchloans.config import Settings

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, object] = response.json()
    assert problem["status"] == status
    assert isinstance(problem["title"], str)
    assert isinstance(problem["type"], str)
    return problem


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.get("/api/nothing-here"), 404)

    assert problem["instance"] == "/api/nothing-here"


async def test_wrong_method_is_405_problem_with_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/loans")

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, POST"


async def test_malformed_json_is_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/loans", content=b'{"amount": ', headers={"Content-Type": "application/json"}
    )

    problem = assert_problem(response, 400)
    assert problem["title"] == "Malformed JSON"


async def test_body_that_is_not_utf8_is_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/loans", content=b'{"a": "\xff"}', headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 400)


async def test_json_array_body_is_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/loans", json=[1, 2])

    assert_problem(response, 422)


async def test_non_json_content_type_is_415_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/loans", content=b"amount=5", headers={"Content-Type": "text/plain"}
    )

    assert_problem(response, 415)


async def test_json_with_charset_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/loans",
        content=b'{"borrower_id": "b", "amount": 5, "currency": "USD"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 201


async def test_body_over_one_mebibyte_is_413_problem(client: httpx.AsyncClient) -> None:
    body = b'{"borrower_id": "' + b"x" * (1024 * 1024) + b'"}'

    response = await client.post(
        "/api/loans", content=body, headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 413)


async def test_streamed_body_over_the_limit_is_413_problem(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    response = await client.post(
        "/api/loans", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


async def test_unexpected_error_is_500_problem_without_traceback(settings: Settings) -> None:
    app: FastAPI = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/boom")

    assert_problem(response, 500)
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "path", ["/api/loans", "/api/stats", "/api/loans/00000000-0000-0000-0000-000000000001"]
)
async def test_database_outage_is_503_problem(
    client_without_database: httpx.AsyncClient, path: str
) -> None:
    response = await client_without_database.get(path)

    problem = assert_problem(response, 503)
    assert problem["title"] == "Database unavailable"
    assert response.headers["retry-after"] == "1"
