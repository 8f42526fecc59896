"""The problems the loans API answers with."""

import uuid
from typing import Any

from branchloans.loans.lifecycle import LoanAction, allowed_actions
from branchloans.loans.models import LoanStatus
from branchloans.problems import ProblemError


class LoanNotFoundError(ProblemError):
    """No loan has the requested id."""

    def __init__(self, loan_id: uuid.UUID) -> None:
        super().__init__(
            404, f"No loan has id {loan_id}.", slug="loan-not-found", title="Loan not found"
        )


class ScheduleUnavailableError(ProblemError):
    """The loan lacks what a repayment schedule is computed from."""

    def __init__(self, detail: str, missing: list[str] | None = None) -> None:
        extensions: dict[str, Any] = {} if missing is None else {"missing": missing}
        super().__init__(
            409, detail, slug="schedule-unavailable", title="Schedule unavailable", **extensions
        )


class TransitionNotAllowedError(ProblemError):
    """The action does not apply to the loan's current status."""

    def __init__(self, action: LoanAction, current: LoanStatus) -> None:
        allowed = allowed_actions(current)
        super().__init__(
            409,
            f"Cannot {action} a loan that is {current}; "
            + (f"allowed: {', '.join(allowed)}." if allowed else f"{current} is final."),
            slug="transition-not-allowed",
            title="Transition not allowed",
            current_status=current.value,
            allowed_actions=[action.value for action in allowed],
        )


class LoanChangedError(ProblemError):
    """The loan's version is not the one the client's If-Match names."""

    def __init__(self, current_etag: str) -> None:
        super().__init__(
            412,
            f"The loan changed since you read it; its ETag is now {current_etag}.",
            slug="loan-changed",
            title="Loan changed",
            headers={"ETag": current_etag},
        )


def etag(version: int) -> str:
    """The strong entity tag of a loan at `version`."""
    return f'"{version}"'


class RepaymentNotAllowedError(ProblemError):
    """Payments are taken only on a disbursed loan."""

    def __init__(self, current: LoanStatus) -> None:
        super().__init__(
            409,
            f"Cannot record a payment on a loan that is {current}; only a disbursed loan "
            "takes payments.",
            slug="repayment-not-allowed",
            title="Repayment not allowed",
            current_status=current.value,
        )


class PaymentRefusedError(ProblemError):
    """A payment the loan cannot take as sent: too many decimals, too much, or a bad time."""

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(422, detail, slug="payment-refused", title="Payment refused", **extensions)


class NothingPastDueError(ProblemError):
    """A default needs a payment past due."""

    def __init__(self, loan_id: uuid.UUID) -> None:
        super().__init__(
            409,
            f"Loan {loan_id} has no payment past due; only a loan in arrears can be defaulted.",
            slug="nothing-past-due",
            title="Nothing past due",
            current_status=LoanStatus.DISBURSED.value,
            days_past_due=0,
        )
