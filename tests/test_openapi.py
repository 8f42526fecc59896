"""The published API description: what /docs, /redoc and client generators read."""

import httpx


async def test_openapi_lists_every_endpoint(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert set(schema["paths"]) >= {
        "/health",
        "/liveness",
        "/readiness",
        "/api/loans",
        "/api/loans/{loan_id}",
        "/api/stats",
    }


async def test_openapi_documents_money_as_numbers_with_examples(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    assert schemas["LoanRead"]["properties"]["amount"]["type"] == "number"
    assert schemas["LoanCreate"]["examples"][0]["currency"] == "INR"
    assert schemas["LoanRead"]["examples"][0]["status"] == "approved"


async def test_openapi_documents_errors_as_problem_json(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    create = paths["/api/loans"]["post"]["responses"]
    assert "application/problem+json" in create["422"]["content"]
    assert (
        "application/problem+json"
        in paths["/api/loans/{loan_id}"]["get"]["responses"]["404"]["content"]
    )


async def test_swagger_ui_and_redoc_are_served(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "/openapi.json" in response.text
