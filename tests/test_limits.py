"""Limits on what a request may send: a header over its bound is a 431 problem naming it."""

import httpx
import pytest

from branchloans.limits import MAX_HEADER_BYTES


@pytest.mark.parametrize("name", ["Authorization", "X-Anything", "Cookie"])
async def test_a_header_over_the_bound_is_431_problem_naming_it(
    secured_client: httpx.AsyncClient, name: str
) -> None:
    value = "Bearer " + "k" * MAX_HEADER_BYTES

    response = await secured_client.get("/api/loans", headers={name: value})

    assert response.status_code == 431
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["instance"] == "/api/loans"
    assert body["errors"] == [
        {
            "field": name.lower(),
            "location": "header",
            "message": f"{name.lower()} must be at most {MAX_HEADER_BYTES} bytes long",
            "type": "too_long",
        }
    ]
    assert body["request_id"] == response.headers["x-request-id"]


async def test_a_header_at_the_bound_is_read(secured_client: httpx.AsyncClient) -> None:
    name = "x-anything"
    value = "v" * (MAX_HEADER_BYTES - len(name))

    response = await secured_client.get("/api/loans", headers={name: value})

    # Through the header check, on to the key check.
    assert response.status_code == 401
