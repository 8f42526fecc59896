"""Every table of the service, imported together so that `Base.metadata` knows them all."""

from branchloans.auth.models import ApiKey
from branchloans.db import Base
from branchloans.idempotency.models import IdempotencyKey
from branchloans.loans.models import Loan, LoanArrears, LoanEvent, Repayment

__all__ = ["ApiKey", "Base", "IdempotencyKey", "Loan", "LoanArrears", "LoanEvent", "Repayment"]
