"""HTTP endpoints for loans: parse, call the service, shape the response."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints

from branchloans.auth.dependencies import AuthenticatedRoute
from branchloans.db import Queries, Transaction
from branchloans.loans import listing, repayments, service
from branchloans.loans.cursor import Position
from branchloans.loans.dependencies import (
    KEYS_EXHAUSTED_RESPONSE,
    LOAN_NOT_FOUND_RESPONSES,
    READ,
    CursorQuery,
    IdempotencyKeyHeader,
    IfNoneMatchHeader,
    NowDep,
    WriterDep,
    change_context,
    cursor_position,
    documented_problem,
    entity_tags,
    next_cursor,
)
from branchloans.loans.errors import etag
from branchloans.loans.fields import Currency, UtcDatetime
from branchloans.loans.lifecycle import TRANSITIONS, LoanAction
from branchloans.loans.listing import LoanFilter
from branchloans.loans.metrics import LoanMetricsDep
from branchloans.loans.models import BORROWER_ID_MAX_LENGTH, LoanStatus
from branchloans.loans.repayment_schemas import ServicedSchedule
from branchloans.loans.rows import VersionedLoan
from branchloans.loans.schemas import LoanCreate, LoanEventRead, LoanRead, LoanStats
from branchloans.loans.writes import LoanActionDep, loan_response, write
from branchloans.responses import JSONResponse
from branchloans.state import DatabaseDep, ReadDatabaseDep
from branchloans.text import StoredLine

_ETAG_HEADER = {
    "ETag": {"description": "The loan's version, for If-Match.", "schema": {"type": "string"}}
}

router = APIRouter(prefix="/api", tags=["loans"], route_class=AuthenticatedRoute)
LOAN_PATH = "/loans/{loan_id}"


DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


_NEXT_LINK_HEADER = {
    "Link": {
        "description": 'The next page, `<...>; rel="next"` (RFC 8288); absent on the last page.',
        "schema": {"type": "string"},
    }
}


def _next_link(request: Request, position: Position, where: LoanFilter) -> str:
    # The request's own path and query, so every filter and the limit carry over.
    url = request.url.include_query_params(cursor=next_cursor(request, position, where))
    return f'<{url.path}?{url.query}>; rel="next"'


@router.get(
    "/loans",
    response_model=list[LoanRead],
    summary="List loans, newest first, a page at a time",
    dependencies=READ,
    responses={
        200: {"headers": _NEXT_LINK_HEADER},
        422: documented_problem("A filter, `limit` or `cursor` is invalid; `errors` names it."),
    },
)
async def list_loans(
    request: Request,
    database: ReadDatabaseDep,
    cursor: CursorQuery = None,
    loan_status: Annotated[LoanStatus | None, Query(alias="status")] = None,
    currency: Annotated[Currency | None, Query()] = None,
    borrower_id: Annotated[
        StoredLine[Annotated[str, StringConstraints(max_length=BORROWER_ID_MAX_LENGTH)]] | None,
        Query(),
    ] = None,
    created_after: Annotated[
        UtcDatetime | None,
        Query(description="Only loans created at or after this ISO-8601 time (with an offset)."),
    ] = None,
    created_before: Annotated[
        UtcDatetime | None,
        Query(description="Only loans created before this ISO-8601 time (with an offset)."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="Loans per page.")
    ] = DEFAULT_PAGE_SIZE,
) -> JSONResponse:
    """Loans, newest first, as a JSON array, optionally filtered; filters combine.

    A page holds at most `limit` loans. When more follow, the `Link` header names the next
    page (the same query with a `cursor`); a deep page costs what the first one costs. A
    cursor is signed and bound to its filters: with other filters it is a 422.
    """
    where = LoanFilter(loan_status, currency, borrower_id, created_after, created_before)
    after = cursor_position(request, cursor, where)
    page = await listing.list_loans(database, where, limit=limit, after=after)
    headers = {"Link": _next_link(request, page.next, where)} if page.next else None
    return JSONResponse(page.loans, headers=headers)


def _refuse_extra_decimals(application: LoanCreate) -> None:
    # Reported as a field error at `amount`, alongside the ones pydantic finds on its own.
    if (message := application.amount_decimals_error()) is not None:
        error = {"type": "too_many_decimals", "loc": ("body", "amount"), "msg": message}
        raise RequestValidationError([{**error, "input": application.amount}])


@router.get(
    LOAN_PATH,
    response_model=LoanRead,
    summary="Get one loan",
    dependencies=READ,
    responses={
        200: {"headers": _ETAG_HEADER},
        304: {"description": "The loan still has the version If-None-Match names."},
        **LOAN_NOT_FOUND_RESPONSES,
    },
)
async def get_loan(
    loan_id: uuid.UUID, database: DatabaseDep, if_none_match: IfNoneMatchHeader = None
) -> Response:
    """The loan with this id, with its version as `ETag`."""
    loan = await service.read_loan(database, loan_id)
    tag = etag(loan.version)
    if if_none_match is not None and (
        if_none_match.strip() == "*" or tag in entity_tags(if_none_match)
    ):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    return loan_response(loan)


@router.get(
    "/loans/{loan_id}/schedule",
    response_model=ServicedSchedule,
    summary="Repayment schedule of a loan",
    dependencies=READ,
    responses={
        **LOAN_NOT_FOUND_RESPONSES,
        409: documented_problem(
            "No schedule exists: the loan has no term or no rate (`missing` lists which), "
            "or an amount its currency cannot pay exactly."
        ),
    },
)
async def get_schedule(loan_id: uuid.UUID, database: ReadDatabaseDep, now: NowDep) -> JSONResponse:
    """Equal monthly instalments repaying the loan, exact to its currency's minor unit.

    Each row gives the due date, the payment, its principal and interest parts, and the
    balance left. The monthly rate is APR / 100 / 12 (nominal APR, compounded monthly).
    Instalment k is due k months after the day (UTC) the loan was disbursed (created, before
    disbursement), on the same day of the month or the month's last day. The last instalment
    absorbs the rounding, so the principal parts sum to the amount and the balance ends at zero.

    Each instalment also shows what payments have `paid` of it, what is `remaining` and whether
    it is `overdue` (due before today, UTC, and not fully paid); the loan's
    `outstanding_principal`, `payoff_amount` and `days_past_due` are as of today.
    """
    schedule = await repayments.serviced_schedule(database, loan_id, now.date())
    return JSONResponse(schedule.model_dump())


@router.post(
    "/loans",
    response_model=LoanRead,
    status_code=status.HTTP_201_CREATED,
    summary="Apply for a loan",
    responses={
        201: {
            "headers": {
                "Location": {"description": "URL of the new loan.", "schema": {"type": "string"}},
                **_ETAG_HEADER,
            }
        },
        400: documented_problem("The body is not valid JSON."),
        409: documented_problem("A request with this Idempotency-Key is still being processed."),
        413: documented_problem("The body is larger than the server accepts."),
        415: documented_problem("The body is not JSON."),
        **KEYS_EXHAUSTED_RESPONSE,
        422: documented_problem(
            "A field is missing or invalid (`errors` names each one), or the "
            "Idempotency-Key was used for a different request."
        ),
    },
)
async def create_loan(
    application: LoanCreate,
    database: DatabaseDep,
    writer: WriterDep,
    request: Request,
    metrics: LoanMetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a loan application; it starts as `pending`, and its history with one event."""
    _refuse_extra_decimals(application)
    context = change_context(writer)

    async def create(queries: Queries) -> Response:
        loan = await service.create_loan(queries, application, context)
        # Formatted from the route's own template: url_for searches every route per call.
        path = router.prefix + LOAN_PATH.format(loan_id=loan.loan["id"])
        location = request.scope.get("root_path", "") + path
        return loan_response(loan, status.HTTP_201_CREATED, Location=location)

    if idempotency_key is None:
        # One statement, its own transaction: the loan and its first event commit together.
        response = await create(database)
    else:
        response = await write(request, database, idempotency_key, context.scope, create)
    # Counted once committed, and once per loan: a replayed answer created nothing.
    if (
        response.status_code == status.HTTP_201_CREATED
        and "Idempotent-Replayed" not in response.headers
    ):
        metrics.loan_created(application.currency, application.amount)
    return response


@router.get(
    "/loans/{loan_id}/events",
    response_model=list[LoanEventRead],
    summary="A loan's history",
    dependencies=READ,
    responses=LOAN_NOT_FOUND_RESPONSES,
)
async def list_loan_events(loan_id: uuid.UUID, database: ReadDatabaseDep) -> JSONResponse:
    """Every status change of the loan, its creation first."""
    events = await service.list_events(database, loan_id)
    return JSONResponse([event.model_dump() for event in events])


def _action_route(action: LoanAction) -> dict[str, Any]:
    transition = TRANSITIONS[action]
    sources = " or ".join(f"`{source}`" for source in sorted(transition.sources))
    return {
        "path": f"{LOAN_PATH}/{action}",
        "name": f"{action}_loan",
        "response_model": LoanRead,
        "summary": f"{action.capitalize()} a loan",
        "description": (
            f"Move a {sources} loan to `{transition.target}`, recording an event with the "
            "optional `reason`. The row is locked while it changes, so concurrent actions "
            "never lose an update: the later one sees the new status."
        ),
        "responses": {
            200: {"headers": _ETAG_HEADER},
            **LOAN_NOT_FOUND_RESPONSES,
            409: documented_problem(
                f"The loan is not {sources}; the problem names `current_status` and "
                "`allowed_actions`. Or a request with this Idempotency-Key is still running."
            ),
            412: documented_problem("If-Match names a version the loan no longer has."),
            **KEYS_EXHAUSTED_RESPONSE,
        },
    }


@router.post(**_action_route(LoanAction.APPROVE))
async def approve(action: LoanActionDep) -> Response:
    """Approve a pending loan."""
    return await action.take(LoanAction.APPROVE)


@router.post(**_action_route(LoanAction.REJECT))
async def reject(action: LoanActionDep) -> Response:
    """Reject a pending or approved loan."""
    return await action.take(LoanAction.REJECT)


@router.post(**_action_route(LoanAction.DISBURSE))
async def disburse(action: LoanActionDep) -> Response:
    """Pay out an approved loan."""
    return await action.take(LoanAction.DISBURSE)


@router.post(**_action_route(LoanAction.REPAY))
async def repay(action: LoanActionDep) -> Response:
    """Mark a disbursed loan repaid."""
    return await action.take(LoanAction.REPAY)


@router.post(**_action_route(LoanAction.DEFAULT))
async def default(action: LoanActionDep, now: NowDep) -> Response:
    """Write off a disbursed loan with a payment past due; the event records the outstanding
    amount (the payoff amount of the day). A loan with nothing past due answers 409."""

    async def write_off(transaction: Transaction) -> VersionedLoan:
        return await repayments.default_loan(
            transaction,
            action.loan_id,
            action.context,
            now.date(),
            reason=action.reason,
            expected_versions=action.expected_versions,
        )

    return await action.run(write_off)


@router.get("/stats", response_model=LoanStats, summary="Portfolio statistics", dependencies=READ)
async def get_stats(database: ReadDatabaseDep, now: NowDep) -> JSONResponse:
    """Loan counts and amounts, overall, by status and by currency; per currency, the
    outstanding principal of disbursed loans and the portfolio at risk.

    PAR30 (PAR90) is the outstanding principal of the disbursed loans whose oldest unpaid
    instalment fell due more than 30 (90) days before today (UTC), and its ratio to the
    currency's outstanding principal. Read from totals that triggers keep per currency and
    oldest unpaid due date: the cost does not grow with the number of loans.
    """
    return JSONResponse((await listing.get_stats(database, now.date())).model_dump())
