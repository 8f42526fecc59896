"""HTTP endpoints for loans: parse, call the service, shape the response."""

import uuid
from typing import Any

from fastapi import APIRouter, Request, status

from branchloans.db import SessionDep
from branchloans.loans import service
from branchloans.loans.metrics import LoanMetricsDep
from branchloans.loans.schemas import LoanCreate, LoanRead, LoanStats
from branchloans.responses import JSONResponse
from branchloans.routing import DecimalJSONRoute


def _problem(description: str) -> dict[str, Any]:
    # The body is set to the Problem schema when the OpenAPI document is built.
    return {"description": description}


router = APIRouter(prefix="/api", tags=["loans"], route_class=DecimalJSONRoute)


def _loan_body(loan: Any) -> dict[str, Any]:
    return LoanRead.model_validate(loan).model_dump()


@router.get("/loans", response_model=list[LoanRead], summary="List loans, newest first")
async def list_loans(session: SessionDep) -> JSONResponse:
    """Every loan, newest first, in the seed API's array shape."""
    loans = await service.list_loans(session)
    return JSONResponse([_loan_body(loan) for loan in loans])


@router.get(
    "/loans/{loan_id}",
    response_model=LoanRead,
    summary="Get one loan",
    responses={404: _problem("No loan has this id."), 422: _problem("The id is not a UUID.")},
)
async def get_loan(loan_id: uuid.UUID, session: SessionDep) -> JSONResponse:
    """The loan with this id."""
    return JSONResponse(_loan_body(await service.get_loan(session, loan_id)))


@router.post(
    "/loans",
    response_model=LoanRead,
    status_code=status.HTTP_201_CREATED,
    summary="Apply for a loan",
    responses={
        201: {
            "headers": {
                "Location": {"description": "URL of the new loan.", "schema": {"type": "string"}}
            }
        },
        400: _problem("The body is not valid JSON."),
        413: _problem("The body is larger than the server accepts."),
        422: _problem("A field is missing or invalid; `errors` names each one."),
    },
)
async def create_loan(
    application: LoanCreate, session: SessionDep, request: Request, metrics: LoanMetricsDep
) -> JSONResponse:
    """Create a loan application; it starts as `pending`."""
    loan = await service.create_loan(session, application)
    metrics.loan_created(loan.currency, loan.amount)
    location = request.url_for("get_loan", loan_id=loan.id).path
    return JSONResponse(
        _loan_body(loan), status_code=status.HTTP_201_CREATED, headers={"Location": location}
    )


@router.get("/stats", response_model=LoanStats, summary="Portfolio statistics")
async def get_stats(session: SessionDep) -> JSONResponse:
    """Loan counts and amounts, overall, by status and by currency."""
    return JSONResponse((await service.get_stats(session)).model_dump())
