"""HTTP endpoints for loans: parse, call the service, shape the response."""

import uuid
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError

from branchloans.db import SessionDep
from branchloans.loans import service
from branchloans.loans.schemas import LoanCreate, LoanRead, LoanSchedule, LoanStats
from branchloans.responses import JSONResponse
from branchloans.routing import DecimalJSONRoute


def _problem(description: str) -> dict[str, Any]:
    # The body is set to the Problem schema when the OpenAPI document is built.
    return {"description": description}


router = APIRouter(prefix="/api", tags=["loans"], route_class=DecimalJSONRoute)


def _loan_body(loan: Any) -> dict[str, Any]:
    return LoanRead.model_validate(loan).model_dump()


def _refuse_extra_decimals(application: LoanCreate) -> None:
    # Reported as a field error at `amount`, alongside the ones pydantic finds on its own.
    message = application.amount_decimals_error()
    if message is not None:
        raise RequestValidationError(
            [
                {
                    "type": "decimal_max_places",
                    "loc": ("body", "amount"),
                    "msg": message,
                    "input": application.amount,
                }
            ]
        )


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


@router.get(
    "/loans/{loan_id}/schedule",
    response_model=LoanSchedule,
    summary="Repayment schedule of a loan",
    responses={
        404: _problem("No loan has this id."),
        409: _problem(
            "No schedule exists: the loan has no term or no rate (`missing` lists which), "
            "or an amount its currency cannot pay exactly."
        ),
        422: _problem("The id is not a UUID."),
    },
)
async def get_schedule(loan_id: uuid.UUID, session: SessionDep) -> JSONResponse:
    """Equal monthly instalments repaying the loan, exact to its currency's minor unit.

    Each row gives the due date, the payment, its principal and interest parts, and the
    balance left. The monthly rate is APR / 100 / 12 (nominal APR, compounded monthly).
    Instalment k is due k months after the day (UTC) the loan was created, on the same day of
    the month or the month's last day. The last instalment absorbs the rounding, so the
    principal parts sum to the amount and the balance ends at zero.
    """
    return JSONResponse((await service.get_schedule(session, loan_id)).model_dump())


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
    application: LoanCreate, session: SessionDep, request: Request
) -> JSONResponse:
    """Create a loan application; it starts as `pending`."""
    _refuse_extra_decimals(application)
    loan = await service.create_loan(session, application)
    location = request.url_for("get_loan", loan_id=loan.id).path
    return JSONResponse(
        _loan_body(loan), status_code=status.HTTP_201_CREATED, headers={"Location": location}
    )


@router.get("/stats", response_model=LoanStats, summary="Portfolio statistics")
async def get_stats(session: SessionDep) -> JSONResponse:
    """Loan counts and amounts, overall, by status and by currency."""
    return JSONResponse((await service.get_stats(session)).model_dump())
