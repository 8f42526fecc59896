"""The loan state machine: which action moves a loan from which status to which.

    pending --approve--> approved --disburse--> disbursed --repay----> repaid
       |                    |                       |
       +------reject------->+--reject--> rejected   +--default--> defaulted

rejected, repaid and defaulted are final.
"""

from dataclasses import dataclass
from enum import StrEnum

from branchloans.loans.models import LoanStatus


class LoanAction(StrEnum):
    """An action a clerk can take on a loan."""

    APPROVE = "approve"
    REJECT = "reject"
    DISBURSE = "disburse"
    REPAY = "repay"
    DEFAULT = "default"


@dataclass(frozen=True)
class Transition:
    """Where an action may start and where it leads."""

    sources: frozenset[LoanStatus]
    target: LoanStatus


TRANSITIONS: dict[LoanAction, Transition] = {
    LoanAction.APPROVE: Transition(frozenset({LoanStatus.PENDING}), LoanStatus.APPROVED),
    LoanAction.REJECT: Transition(
        frozenset({LoanStatus.PENDING, LoanStatus.APPROVED}), LoanStatus.REJECTED
    ),
    LoanAction.DISBURSE: Transition(frozenset({LoanStatus.APPROVED}), LoanStatus.DISBURSED),
    LoanAction.REPAY: Transition(frozenset({LoanStatus.DISBURSED}), LoanStatus.REPAID),
    LoanAction.DEFAULT: Transition(frozenset({LoanStatus.DISBURSED}), LoanStatus.DEFAULTED),
}


def allowed_actions(status: LoanStatus) -> list[LoanAction]:
    """The actions that may be taken on a loan in `status`; none for a final status."""
    return [action for action, transition in TRANSITIONS.items() if status in transition.sources]
