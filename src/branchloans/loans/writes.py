"""How a loan write runs: one transaction per request (the unit of work), at most once per
Idempotency-Key, and the changed loan as the answer."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response, status

from branchloans.db import Database, Transaction
from branchloans.idempotency.service import run_once
from branchloans.loans import service
from branchloans.loans.dependencies import (
    IdempotencyKeyHeader,
    IfMatchHeader,
    ManagerDep,
    change_context,
    versions_in,
)
from branchloans.loans.errors import etag
from branchloans.loans.lifecycle import LoanAction
from branchloans.loans.rows import VersionedLoan
from branchloans.loans.schemas import TransitionRequest
from branchloans.responses import JSONResponse
from branchloans.state import DatabaseDep, app_state


def loan_response(
    loan: VersionedLoan, status_code: int = status.HTTP_200_OK, **headers: str
) -> JSONResponse:
    """The loan as the API shows it, its version as the ETag."""
    return JSONResponse(
        loan.loan, status_code=status_code, headers={"ETag": etag(loan.version), **headers}
    )


async def write(
    request: Request,
    database: Database,
    idempotency_key: str | None,
    scope: str,
    operation: Callable[[Transaction], Awaitable[Response]],
) -> Response:
    """The request's unit of work: `operation` in one transaction, committed when it returns;
    with an Idempotency-Key, at most once per key, the answer stored in the same transaction."""
    async with database.transaction() as transaction:
        if idempotency_key is None:
            return await operation(transaction)
        return await run_once(
            transaction,
            request,
            app_state(request.app).settings,
            scope=scope,
            key=idempotency_key,
            operation=lambda: operation(transaction),
        )


class LoanActionRequest:
    """What every lifecycle endpoint receives: the loan, who acts, the reason, the conditions.

    The manager comes before the database: a key looked up there holds no connection while
    the request waits for another.
    """

    def __init__(
        self,
        loan_id: uuid.UUID,
        manager: ManagerDep,
        database: DatabaseDep,
        request: Request,
        body: TransitionRequest | None = None,
        if_match: IfMatchHeader = None,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> None:
        self.loan_id, self.database, self.request = loan_id, database, request
        self.context = change_context(manager)
        self.reason = body.reason if body else None
        self.expected_versions = versions_in(if_match)
        self.idempotency_key = idempotency_key

    async def take(self, action: LoanAction) -> Response:
        """Lock the loan, check the action applies, change it and record the event."""

        async def transition(transaction: Transaction) -> VersionedLoan:
            return await service.transition_loan(
                transaction,
                self.loan_id,
                action,
                self.context,
                reason=self.reason,
                expected_versions=self.expected_versions,
            )

        return await self.run(transition)

    async def run(self, change: Callable[[Transaction], Awaitable[VersionedLoan]]) -> Response:
        """`change` as the request's unit of work, answering with the changed loan."""

        async def respond(transaction: Transaction) -> Response:
            return loan_response(await change(transaction))

        return await write(
            self.request, self.database, self.idempotency_key, self.context.scope, respond
        )


LoanActionDep = Annotated[LoanActionRequest, Depends()]
