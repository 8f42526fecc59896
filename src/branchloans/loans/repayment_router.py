"""HTTP endpoints for a loan's repayments."""

import uuid

from fastapi import APIRouter, Request, Response, status

from branchloans.auth.dependencies import AuthenticatedRoute
from branchloans.db import Transaction
from branchloans.loans import repayments
from branchloans.loans.dependencies import (
    KEYS_EXHAUSTED_RESPONSE,
    LOAN_NOT_FOUND_RESPONSES,
    READ,
    IdempotencyKeyHeader,
    NowDep,
    WriterDep,
    change_context,
    documented_problem,
)
from branchloans.loans.metrics import LoanMetricsDep
from branchloans.loans.repayment_schemas import RepaymentCreate, RepaymentRead
from branchloans.loans.writes import write
from branchloans.responses import JSONResponse
from branchloans.state import DatabaseDep

router = APIRouter(prefix="/api", tags=["repayments"], route_class=AuthenticatedRoute)
REPAYMENTS_PATH = "/loans/{loan_id}/repayments"

ALLOCATION_ORDER = """A payment made on day D is allocated, each step oldest instalment first:

1. the interest of every instalment due before D (overdue interest);
2. the principal of those instalments (overdue principal);
3. the current instalment (the first due on or after D): its interest, then its principal;
4. the principal of later instalments (prepaid principal; their interest is not yet owed).

Payments are allocated in the order they are recorded, each as of its own `paid_at` day. The
payoff amount on day D is all unpaid principal plus the unpaid interest of the overdue and
current instalments: a payment that reaches it moves the loan to `repaid`, and the interest of
later instalments is never charged. A larger payment is refused (422, with `payoff_amount`)."""


@router.post(
    REPAYMENTS_PATH,
    response_model=RepaymentRead,
    status_code=status.HTTP_201_CREATED,
    summary="Record a payment on a disbursed loan",
    description=ALLOCATION_ORDER,
    responses={
        404: documented_problem("No loan has this id."),
        409: documented_problem(
            "The loan is not disbursed (`current_status` names its status), or a request with "
            "this Idempotency-Key is still being processed."
        ),
        422: documented_problem(
            "The amount is invalid, finer than the currency's minor unit, or more than the "
            "payoff amount (`payoff_amount` says it); `paid_at` is in the future or before the "
            "disbursement; or the Idempotency-Key was used for a different request."
        ),
        **KEYS_EXHAUSTED_RESPONSE,
    },
)
async def record_repayment(
    loan_id: uuid.UUID,
    payment: RepaymentCreate,
    writer: WriterDep,
    database: DatabaseDep,
    request: Request,
    metrics: LoanMetricsDep,
    now: NowDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Allocate a payment to the loan's schedule and record it with its allocation."""
    context = change_context(writer)
    recorded: list[RepaymentRead] = []

    async def record(transaction: Transaction) -> Response:
        recorded.append(
            await repayments.record_repayment(transaction, loan_id, payment, context, now)
        )
        return JSONResponse(recorded[-1].model_dump(), status_code=status.HTTP_201_CREATED)

    response = await write(request, database, idempotency_key, context.scope, record)
    # Counted once committed, and once per payment: a replayed answer recorded nothing.
    if recorded and "Idempotent-Replayed" not in response.headers:
        metrics.repayment_received(recorded[0].currency, recorded[0].amount)
    return response


@router.get(
    REPAYMENTS_PATH,
    response_model=list[RepaymentRead],
    summary="A loan's payments, oldest first",
    dependencies=READ,
    responses=LOAN_NOT_FOUND_RESPONSES,
)
async def list_repayments(loan_id: uuid.UUID, database: DatabaseDep) -> JSONResponse:
    """Every payment recorded on the loan, oldest first, with its allocation."""
    return JSONResponse(
        [payment.model_dump() for payment in await repayments.list_repayments(database, loan_id)]
    )
