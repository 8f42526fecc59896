"""Every table of the service, imported together so that `Base.metadata` knows them all."""

from branchloans.db import Base
from branchloans.idempotency.models import IdempotencyKey
from branchloans.loans.models import Loan, LoanEvent

__all__ = ["Base", "IdempotencyKey", "Loan", "LoanEvent"]
