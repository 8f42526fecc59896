"""Servicing a loan against its schedule: allocating payments, and what is owed and overdue.

Pure arithmetic, no I/O. The schedule is fixed at disbursement; payments never re-amortise
it. A payment made on day D is allocated, each step in instalment order, oldest first:

1. the interest of every instalment due before D (overdue interest);
2. the principal of those instalments (overdue principal);
3. the current instalment (the first one due on or after D): its interest, then its principal;
4. the principal of later instalments (prepaid principal; their interest is not yet owed).

The payoff amount on day D is every unpaid principal plus the unpaid interest of the overdue
instalments and the current one: paying it clears the principal, and the interest of later
instalments is never charged. A loan whose principal is all paid is repaid.

An instalment is overdue on day D when it is due before D and not fully paid; a loan's days past
due are the days since its oldest unpaid instalment fell due (0 when none is overdue).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from branchloans.loans.schedule_schemas import Instalment


class OverpaymentError(ValueError):
    """A payment larger than the payoff amount."""

    def __init__(self, amount: Decimal, payoff: Decimal) -> None:
        super().__init__(f"the payment {amount} exceeds the payoff amount {payoff}")
        self.amount, self.payoff = amount, payoff


@dataclass(frozen=True)
class Allocated:
    """What one payment paid of one instalment."""

    instalment: int
    interest: Decimal
    principal: Decimal

    def as_json(self) -> dict[str, object]:
        """As stored and shown: amounts as exact decimal strings."""
        return {
            "instalment": self.instalment,
            "interest": str(self.interest),
            "principal": str(self.principal),
        }

    @classmethod
    def of_json(cls, value: dict[str, object]) -> "Allocated":
        """The allocation `as_json` wrote."""
        return cls(
            int(str(value["instalment"])),
            Decimal(str(value["interest"])),
            Decimal(str(value["principal"])),
        )


@dataclass
class _Owed:
    instalment: Instalment
    interest_paid: Decimal
    principal_paid: Decimal

    @property
    def interest_left(self) -> Decimal:
        return self.instalment.interest - self.interest_paid

    @property
    def principal_left(self) -> Decimal:
        return self.instalment.principal - self.principal_paid


class Ledger:
    """A schedule and what has been paid of each instalment."""

    def __init__(self, instalments: Sequence[Instalment], paid: Iterable[Allocated] = ()) -> None:
        zero = instalments[0].principal * 0
        self._owed = [_Owed(row, zero, zero) for row in instalments]
        self._zero = zero
        # Kept as payments are applied: read on every allocation.
        self._principal_left = sum((row.principal for row in instalments), zero)
        for part in paid:
            self._apply(part)

    def _apply(self, part: Allocated) -> None:
        owed = self._owed[part.instalment - 1]
        owed.interest_paid += part.interest
        owed.principal_paid += part.principal
        self._principal_left -= part.principal

    def _current(self, on: date) -> int:
        # Index of the first instalment due on or after `on`; len() when all are past due.
        return next(
            (i for i, o in enumerate(self._owed) if o.instalment.due_date >= on), len(self._owed)
        )

    @property
    def outstanding_principal(self) -> Decimal:
        """Principal not yet repaid."""
        return self._principal_left

    def payoff_amount(self, on: date) -> Decimal:
        """What clears the loan on day `on`: every unpaid principal, plus the unpaid interest of
        the instalments due before `on` and of the current one."""
        current = self._current(on)
        interest = sum((owed.interest_left for owed in self._owed[: current + 1]), self._zero)
        return self.outstanding_principal + interest

    @property
    def oldest_unpaid_due(self) -> date | None:
        """The due date of the first instalment not fully paid; None when all are."""
        return next(
            (o.instalment.due_date for o in self._owed if o.interest_left or o.principal_left),
            None,
        )

    def days_past_due(self, on: date) -> int:
        """Days since the oldest unpaid instalment fell due, as of `on`; 0 when none is overdue."""
        oldest = self.oldest_unpaid_due
        return max(0, (on - oldest).days) if oldest is not None else 0

    def rows(self, on: date) -> list[tuple[Instalment, Decimal, Decimal, bool]]:
        """Each instalment, what has been paid of it, what remains, and whether it is overdue."""
        result = []
        for owed in self._owed:
            paid = owed.interest_paid + owed.principal_paid
            remaining = owed.interest_left + owed.principal_left
            overdue = bool(remaining) and owed.instalment.due_date < on
            result.append((owed.instalment, paid, remaining, overdue))
        return result

    def allocate(self, amount: Decimal, on: date) -> list[Allocated]:
        """Allocate a payment of `amount` made on day `on`, in the documented order, and record it.

        Raises `OverpaymentError` when `amount` exceeds the payoff amount.
        """
        payoff = self.payoff_amount(on)
        if amount > payoff:
            raise OverpaymentError(amount, payoff)
        current = self._current(on)
        overdue, upcoming = self._owed[:current], self._owed[current:]
        # (instalment index, part) in the order of the allocation steps.
        steps = [(o, "interest") for o in overdue] + [(o, "principal") for o in overdue]
        if upcoming:
            steps += [(upcoming[0], "interest"), (upcoming[0], "principal")]
            steps += [(o, "principal") for o in upcoming[1:]]
        left = amount
        paid: dict[int, Allocated] = {}
        for owed, part in steps:
            if not left:
                break
            due = owed.interest_left if part == "interest" else owed.principal_left
            take = min(due, left)
            if not take:
                continue
            left -= take
            number = owed.instalment.number
            before = paid.get(number, Allocated(number, self._zero, self._zero))
            if part == "interest":
                owed.interest_paid += take
                paid[number] = Allocated(number, before.interest + take, before.principal)
            else:
                owed.principal_paid += take
                self._principal_left -= take
                paid[number] = Allocated(number, before.interest, before.principal + take)
        assert not left, "a payment within the payoff amount is allocated whole"
        return [paid[number] for number in sorted(paid)]
