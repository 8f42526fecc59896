"""Realistic synthetic loans in bulk, loaded with COPY, for demos and benchmarks.

Loans are created over the two years before the load, oldest first (as a real table fills),
in ten currencies weighted like a microlender's markets, with amounts log-uniform in whole
minor units of their currency, and statuses distributed like a mature book: most disbursed
or repaid, some pending, approved, rejected or defaulted. `updated_at` is when the loan
reached its status and `disbursed_at` is set exactly for disbursed, repaid and defaulted
loans, between creation and that last change.

Paid-out loans with a schedule get a payment history (see `payment_history`): repaid loans
paid their instalments and then their payoff, defaulted ones paid some and stopped, and loans
still being repaid pay on time, late, partly, or stopped months ago, so that the outstanding
principal and the portfolio at risk look like a living book. Each payment is allocated as the
API allocates it, and the loan's outstanding principal and oldest unpaid due date are written
with it (the triggers then keep `loan_arrears`).

Each loan gets one event, as `branchloans seed` and migration 0002 record a loan whose
earlier history is unknown: from no status to its current one, at `updated_at`, and the loan
is at version 1. A full event trail would triple the events and, with one foreign-key check
per event, the load time. Loans and events are written in batches by COPY in one
transaction, the next batch generated in a thread while Postgres stores the last; the
triggers on `loans` keep `loan_totals` exact as they go.

`seed` fixes every value but the ids, which are always fresh, so loading twice adds loans.
"""

import asyncio
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from branchloans.currencies import MINOR_UNITS, minor_unit
from branchloans.loans.models import MAX_AMOUNT, LoanStatus
from branchloans.loans.rows import LoanRow
from branchloans.loans.schedule import build_schedule
from branchloans.loans.servicing import Allocated, Ledger

LOAN_COLUMNS = (*LoanRow.__annotations__, "outstanding_principal", "oldest_unpaid_due")
REPAYMENT_COLUMNS = ("loan_id", "amount", "interest", "principal", "allocation", "paid_at")
EVENT_COLUMNS = ("loan_id", "to_status", "reason", "occurred_at")
EVENT_REASON = "synthetic demo data"
NULL = "\\N"
BATCH_SIZE = 20_000
HISTORY_SECONDS = 730 * 86_400.0


@dataclass(frozen=True)
class Market:
    """Where loans in a currency come from and how large they usually are."""

    currency: str
    country: str
    weight: int
    smallest: int
    largest: int


MARKETS = (
    Market("INR", "india", 25, 2_000, 50_000),
    Market("KES", "kenya", 18, 1_000, 50_000),
    Market("NGN", "nigeria", 15, 5_000, 50_000),
    Market("PHP", "philippines", 12, 1_000, 50_000),
    Market("VND", "vietnam", 6, 10_000, 50_000),
    Market("UGX", "uganda", 6, 10_000, 50_000),
    Market("GHS", "ghana", 5, 100, 20_000),
    Market("TZS", "tanzania", 5, 10_000, 50_000),
    Market("MXN", "mexico", 5, 500, 50_000),
    Market("USD", "us", 3, 50, 5_000),
)

STATUS_WEIGHTS = {
    LoanStatus.PENDING: 8,
    LoanStatus.APPROVED: 5,
    LoanStatus.REJECTED: 17,
    LoanStatus.DISBURSED: 35,
    LoanStatus.REPAID: 28,
    LoanStatus.DEFAULTED: 7,
}
_PAID_OUT = frozenset({"disbursed", "repaid", "defaulted"})
# The longest time from creation to the current status: days for a decision, up to a year
# for a loan to be repaid or written off.
_MAX_AGE_SECONDS = {
    "pending": 0.0,
    "approved": 5 * 86_400.0,
    "rejected": 5 * 86_400.0,
    "disbursed": 8 * 86_400.0,
    "repaid": 365 * 86_400.0,
    "defaulted": 365 * 86_400.0,
}
_TERMS = (3, 6, 9, 12, 18, 24, 36)
_TERM_WEIGHTS = (10, 20, 10, 30, 10, 15, 5)


@dataclass(frozen=True)
class Batch:
    """`size` loans and their events as COPY text (tab-separated, `\\N` for NULL)."""

    size: int
    loans: bytes
    events: bytes
    repayments: bytes = b""


@dataclass(frozen=True)
class Plan:
    """What every batch of one load shares; batches are generated independently from it."""

    count: int
    seed: str
    end: float

    def batches(self) -> range:
        """The indexes of the batches of this load."""
        return range(math.ceil(self.count / BATCH_SIZE))


def _amount(rng: random.Random, market: Market) -> str:
    # Log-uniform: many small loans, fewer large ones, in whole minor units of the currency.
    places = MINOR_UNITS[market.currency]
    value = math.exp(rng.uniform(math.log(market.smallest), math.log(market.largest)))
    minor = max(1, min(round(value * 10**places), int(MAX_AMOUNT) * 10**places))
    if places == 0:
        return str(minor)
    whole, fraction = divmod(minor, 10**places)
    return f"{whole}.{fraction:0{places}d}"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _uuid4s(count: int) -> list[str]:
    # Random version-4 UUIDs from the OS, as text; uuid.uuid4() one by one costs more here.
    text = os.urandom(16 * count).hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-4{text[i + 13 : i + 16]}"
        f"-{'89ab'[int(text[i + 16], 16) & 3]}{text[i + 17 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


# How the borrowers of loans still being repaid behave: most pay each instalment on time, some
# have missed the latest one or two, some paid part of one and stopped, some stopped long ago.
BEHAVIOUR_WEIGHTS = {"on_time": 60, "late": 20, "partial": 10, "stopped": 10}
_BEHAVIOURS = list(BEHAVIOUR_WEIGHTS)
_BEHAVIOUR_WEIGHTS = list(BEHAVIOUR_WEIGHTS.values())
_DAY = 86_400.0


def _midnight(day: date) -> float:
    return datetime.combine(day, datetime.min.time(), UTC).timestamp()


@dataclass(frozen=True)
class PaidOut:
    """A loan that was disbursed: what it is, when it went out, and until when it was paid."""

    amount: str
    currency: str
    term: int
    rate: str
    disbursed: float
    until: float


def payment_history(
    rng: random.Random, loan: PaidOut, status: str
) -> tuple[list[tuple[Decimal, float, list[Allocated]]], Ledger]:
    """The payments of one paid-out loan, each allocated, and the ledger they leave.

    A repaid loan paid each instalment until it was repaid, then its payoff amount; a defaulted
    one paid some and stopped; a disbursed one pays as its borrower behaves, but never its last
    instalment (it would be repaid). An instalment is paid within a few days of falling due
    (within 20 for late payers).
    """
    schedule = build_schedule(
        Decimal(loan.amount),
        loan.currency,
        loan.term,
        Decimal(loan.rate),
        datetime.fromtimestamp(loan.disbursed, UTC).date(),
    )
    ledger = Ledger(schedule.instalments)
    due = [row for row in schedule.instalments if _midnight(row.due_date) < loan.until]
    behaviour = "on_time"
    if status == "disbursed":
        behaviour = rng.choices(_BEHAVIOURS, weights=_BEHAVIOUR_WEIGHTS)[0]
        missed = {"on_time": 0, "late": rng.randint(1, 2), "partial": 1, "stopped": 4}[behaviour]
        due = due[: max(0, min(len(due) - missed, loan.term - 1))]
    elif status == "defaulted":
        due = due[: rng.randint(0, max(0, len(due) - 3))]
    planned: list[tuple[Decimal, float]] = []
    for row in due:
        delay = rng.random() * (20 if behaviour == "late" else 3) * _DAY
        planned.append(
            (row.payment, max(min(_midnight(row.due_date) + delay, loan.until), loan.disbursed))
        )
    if behaviour == "partial" and len(due) < loan.term - 1:
        half = (schedule.instalments[len(due)].payment / 2).quantize(minor_unit(loan.currency))
        planned.append((half, max(loan.until - rng.random() * _DAY, loan.disbursed)))
    # Each instalment is paid once, in order, on or after its due date: never beyond the payoff.
    payments = [
        (amount, paid_at, ledger.allocate(amount, datetime.fromtimestamp(paid_at, UTC).date()))
        for amount, paid_at in planned
        if amount > 0  # a schedule may end on instalments of zero
    ]
    if status == "repaid" and ledger.outstanding_principal:
        on = datetime.fromtimestamp(loan.until, UTC).date()
        payoff = ledger.payoff_amount(on)
        payments.append((payoff, loan.until, ledger.allocate(payoff, on)))
    return payments, ledger


_STATUSES = [status.value for status in STATUS_WEIGHTS]
_STATUS_WEIGHTS = list(STATUS_WEIGHTS.values())
_MARKET_WEIGHTS = [market.weight for market in MARKETS]


def generate_batch(plan: Plan, index: int) -> Batch:
    """Batch `index` of a load, the same for the same plan (but for the ids).

    Rows are COPY text rather than Python values: Postgres parses text faster than
    asyncpg encodes Decimals and datetimes, and the values are ours, so nothing needs
    escaping. A steady flow of applications: the n-th loan is created at a random moment
    of the n-th of `count` equal slices of the two years, so creation times ascend and
    end before `plan.end`.
    """
    rng = random.Random(f"{plan.seed}:{index}")  # noqa: S311 - demo data, not secrets
    start = index * BATCH_SIZE
    size = min(BATCH_SIZE, plan.count - start)
    borrowers = max(1, plan.count // 2)
    first = plan.end - HISTORY_SECONDS
    slice_seconds = HISTORY_SECONDS / plan.count
    uniform = rng.random
    markets = rng.choices(MARKETS, weights=_MARKET_WEIGHTS, k=size)
    statuses = rng.choices(_STATUSES, weights=_STATUS_WEIGHTS, k=size)
    terms = rng.choices(_TERMS, weights=_TERM_WEIGHTS, k=size)
    loans: list[str] = []
    events: list[str] = []
    repayments: list[str] = []
    for offset, (loan_id, market, status, term) in enumerate(
        zip(_uuid4s(size), markets, statuses, terms, strict=True), start
    ):
        created = first + (offset + uniform()) * slice_seconds
        changed = created + min(_MAX_AGE_SECONDS[status], plan.end - created) * uniform()
        updated_at = _utc(changed)
        disbursed_at = (
            _utc(created + (changed - created) * uniform()) if status in _PAID_OUT else NULL
        )
        rate = 800 + int(uniform() * 3700)
        amount = _amount(rng, market)
        has_term, has_rate = uniform() < 0.95, uniform() < 0.95
        rate_text = f"{rate // 100}.{rate % 100:02d}"
        outstanding, oldest = NULL, NULL
        if status in _PAID_OUT and has_term and has_rate:
            disbursed = datetime.fromisoformat(disbursed_at).timestamp()
            until = plan.end if status == "disbursed" else changed
            history, ledger = payment_history(
                rng, PaidOut(amount, market.currency, term, rate_text, disbursed, until), status
            )
            for paid, paid_at, parts in history:
                repayments.append(
                    f"{loan_id}\t{paid}\t{sum(p.interest for p in parts)}"
                    f"\t{sum(p.principal for p in parts)}"
                    f"\t{json.dumps([p.as_json() for p in parts])}\t{_utc(paid_at)}\n"
                )
            outstanding = str(ledger.outstanding_principal)
            due = ledger.oldest_unpaid_due
            oldest = due.isoformat() if due is not None else NULL
        loans.append(
            f"{loan_id}\tusr_{market.country}_{int(uniform() * borrowers):07d}"
            f"\t{amount}\t{market.currency}\t{status}"
            f"\t{term if has_term else NULL}"
            f"\t{rate_text if has_rate else NULL}"
            f"\t{_utc(created)}\t{updated_at}\t{disbursed_at}\t{outstanding}\t{oldest}\n"
        )
        events.append(f"{loan_id}\t{status}\t{EVENT_REASON}\t{updated_at}\n")
    return Batch(
        size, "".join(loans).encode(), "".join(events).encode(), "".join(repayments).encode()
    )


@dataclass(frozen=True)
class LoadReport:
    """What a load wrote and how long it took."""

    loans: int
    events: int
    seconds: float


# Plain indexes (none backing a constraint) of a table, with the statement that rebuilds each.
_PLAIN_INDEXES = """
SELECT format('DROP INDEX %I', index.relname), pg_get_indexdef(entry.indexrelid)
FROM pg_index AS entry JOIN pg_class AS index ON index.oid = entry.indexrelid
WHERE entry.indrelid = $1::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = entry.indexrelid)
ORDER BY index.relname
"""
# Foreign keys of a table, with the statement that adds (and validates) each again.
_FOREIGN_KEYS = """
SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname),
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname,
              pg_get_constraintdef(oid))
FROM pg_constraint
WHERE conrelid = $1::regclass AND contype = 'f'
ORDER BY conname
"""


async def _set_aside(connection: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop the plain indexes and foreign keys of `tables`; the statements that restore them.

    Postgres checks a foreign key row by row and inserts index entries one at a time, while
    adding them afterwards is one sort per index and one join per key.
    """
    indexes: list[str] = []
    keys: list[str] = []
    for table in tables:
        for query, restore in (_PLAIN_INDEXES, indexes), (_FOREIGN_KEYS, keys):
            for drop, create in await connection.fetch(query, table):
                await connection.execute(drop)
                restore.append(create)
    return indexes + keys


async def load_synthetic_loans(connection: Any, count: int, seed: int | None = None) -> LoadReport:
    """Generate `count` loans with their events and COPY them in, in one transaction.

    `connection` is an asyncpg connection. The next batch is generated in a thread while
    Postgres stores the current one. A load at least as large as the table sets the plain
    indexes and foreign keys of `loans` and `loan_events` aside and adds them again before
    committing, which keeps other sessions off those tables until the load commits. The
    tables are analysed afterwards so the planner sees their new size at once.
    """
    started = time.perf_counter()
    plan = Plan(
        count, str(seed if seed is not None else os.urandom(8).hex()), datetime.now(UTC).timestamp()
    )
    async with connection.transaction():
        rows: float = await connection.fetchval(
            "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'loans'::regclass"
        )
        restore = (
            await _set_aside(connection, ("loans", "loan_events", "repayments"))
            if count >= rows
            else []
        )
        upcoming = asyncio.create_task(asyncio.to_thread(generate_batch, plan, 0))
        for index in plan.batches():
            batch = await upcoming
            if index + 1 in plan.batches():
                upcoming = asyncio.create_task(asyncio.to_thread(generate_batch, plan, index + 1))
            for table, text, columns in (
                ("loans", batch.loans, LOAN_COLUMNS),
                ("loan_events", batch.events, EVENT_COLUMNS),
                ("repayments", batch.repayments, REPAYMENT_COLUMNS),
            ):
                await connection.copy_to_table(table, source=io.BytesIO(text), columns=columns)
        if restore:
            await connection.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for statement in restore:
            await connection.execute(statement)
    await connection.execute("ANALYZE loans, loan_events, loan_totals, repayments, loan_arrears")
    return LoadReport(count, count, time.perf_counter() - started)
