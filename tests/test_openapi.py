"""The published API description: what /docs, /redoc and client generators read."""

import json
import uuid
from datetime import date
from decimal import Decimal

import httpx

from branchloans.loans.lifecycle import LoanAction
from branchloans.loans.repayment_schemas import ServicedInstalment, ServicedSchedule
from branchloans.loans.schedule import build_schedule
from branchloans.loans.servicing import Ledger
from branchloans.responses import dump_json


async def test_openapi_lists_every_endpoint(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert set(schema["paths"]) >= {
        "/health",
        "/liveness",
        "/readiness",
        "/api/loans",
        "/api/loans/{loan_id}",
        "/api/loans/{loan_id}/schedule",
        "/api/stats",
        "/api/loans/{loan_id}/events",
        *(f"/api/loans/{{loan_id}}/{action}" for action in LoanAction),
    }


async def test_openapi_documents_each_action_with_its_conflicts(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    for action in LoanAction:
        operation = paths[f"/api/loans/{{loan_id}}/{action}"]["post"]
        assert set(operation["responses"]) >= {"200", "404", "409", "412", "422"}
        assert "if-match" in {parameter["name"].lower() for parameter in operation["parameters"]}


async def test_openapi_shows_the_state_diagram(client: httpx.AsyncClient) -> None:
    tags = (await client.get("/openapi.json")).json()["tags"]

    loans = next(tag for tag in tags if tag["name"] == "loans")
    assert "pending --approve--> approved" in loans["description"]


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
    for path in ("/docs", "/docs/swagger-initializer.js", "/redoc"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "http" not in response.text, "every asset comes from the service itself"
    assert "/openapi.json" in (await client.get("/docs/swagger-initializer.js")).text
    assert 'spec-url="/openapi.json"' in (await client.get("/redoc")).text


async def test_openapi_documents_the_api_key_scheme_and_its_refusals(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    create = schema["paths"]["/api/loans"]["post"]
    assert create["security"] == [{"ApiKey": []}]
    assert {"401", "403"} <= set(create["responses"])
    assert "security" not in schema["paths"]["/health"]["get"]


async def test_openapi_documents_the_schedule_and_its_problems(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    responses = document["paths"]["/api/loans/{loan_id}/schedule"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServicedSchedule"
    }
    for status in ("404", "409", "422"):
        assert "application/problem+json" in responses[status]["content"]
    instalment = document["components"]["schemas"]["ServicedInstalment"]["properties"]
    assert instalment["payment"]["type"] == instalment["remaining"]["type"] == "number"
    assert instalment["due_date"]["format"] == "date"


async def test_openapi_schedule_example_is_what_the_api_computes(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    (example,) = schemas["ServicedSchedule"]["examples"]

    schedule = build_schedule(Decimal("1000.00"), "USD", 3, Decimal("12.00"), date(2025, 1, 31))
    ledger = Ledger(schedule.instalments)
    ledger.allocate(Decimal("100.00"), date(2025, 2, 20))
    today = date(2025, 3, 10)
    computed = ServicedSchedule(
        loan_id=uuid.UUID(example["loan_id"]),
        **{
            **dict(schedule),
            "instalments": [
                ServicedInstalment(
                    **row.model_dump(), paid=paid, remaining=remaining, overdue=overdue
                )
                for row, paid, remaining, overdue in ledger.rows(today)
            ],
        },
        as_of=today,
        outstanding_principal=ledger.outstanding_principal,
        payoff_amount=ledger.payoff_amount(today),
        days_past_due=ledger.days_past_due(today),
    )
    assert json.loads(dump_json(computed.model_dump())) == example
