"""GET /api/stats reads totals that triggers keep; they must equal a full scan, always."""

import asyncio
import json
import random
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from branchloans.loans.lifecycle import LoanAction
from branchloans.loans.models import LoanStatus
from tests.support import HISTORY_ASIDE

CENT = Decimal("0.01")
CURRENCIES = ("INR", "KES", "USD", "VND")


async def scanned_stats(session: AsyncSession) -> dict[str, Any]:
    """The statistics as the seed computed them: by scanning every loan."""
    rows = (
        await session.execute(
            text("SELECT status, currency, count(*), sum(amount) FROM loans GROUP BY 1, 2")
        )
    ).all()
    by_status = dict.fromkeys((status.value for status in LoanStatus), 0)
    by_currency: dict[str, int] = {}
    amount_by_currency: dict[str, Decimal] = {}
    for status, currency, count, amount in rows:
        by_status[status] += count
        by_currency[currency] = by_currency.get(currency, 0) + count
        amount_by_currency[currency] = amount_by_currency.get(currency, Decimal(0)) + amount
    total_loans = sum(by_status.values())
    total_amount = sum(amount_by_currency.values(), Decimal(0))
    average = total_amount / total_loans if total_loans else Decimal(0)
    return {
        "total_loans": total_loans,
        "total_amount": total_amount.quantize(CENT),
        "avg_amount": average.quantize(CENT, rounding=ROUND_HALF_EVEN),
        "by_status": by_status,
        "by_currency": dict(sorted(by_currency.items())),
        "amount_by_currency": dict(sorted(amount_by_currency.items())),
        "at_risk_by_currency": await scanned_arrears(session),
    }


# A disbursed loan's oldest unpaid due date; without payments, its first instalment's.
_DUE = (
    "coalesce(oldest_unpaid_due, CASE WHEN term_months IS NOT NULL"
    " AND interest_rate_apr IS NOT NULL"
    " THEN ((disbursed_at AT TIME ZONE 'UTC')::date + interval '1 month')::date END)"
)
_TODAY = "(now() AT TIME ZONE 'UTC')::date"


async def scanned_arrears(session: AsyncSession) -> dict[str, Any]:
    """Outstanding principal and PAR30/PAR90 per currency, by scanning every disbursed loan."""
    rows = await session.execute(
        text(
            "SELECT currency, count(*), sum(coalesce(outstanding_principal, amount)),"
            f" coalesce(sum(coalesce(outstanding_principal, amount))"
            f"   FILTER (WHERE {_DUE} < {_TODAY} - 30), 0),"
            f" coalesce(sum(coalesce(outstanding_principal, amount))"
            f"   FILTER (WHERE {_DUE} < {_TODAY} - 90), 0)"
            " FROM loans WHERE status = 'disbursed' GROUP BY currency ORDER BY currency"
        )
    )

    def at_risk(amount: Decimal, outstanding: Decimal) -> dict[str, Decimal]:
        ratio = (amount / outstanding).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
        return {"amount": amount, "ratio": ratio}

    return {
        currency: {
            "outstanding_principal": outstanding,
            "loans": loans,
            "par_30": at_risk(par_30, outstanding),
            "par_90": at_risk(par_90, outstanding),
        }
        for currency, loans, outstanding, par_30, par_90 in rows
    }


async def served_stats(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/stats")
    assert response.status_code == 200
    served: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return served


async def loan_ids(session: AsyncSession) -> list[str]:
    return [str(row[0]) for row in await session.execute(text("SELECT id FROM loans ORDER BY id"))]


async def _create(client: httpx.AsyncClient, rng: random.Random) -> None:
    currency = rng.choice(CURRENCIES)
    cents = rng.randrange(1, 5_000_000)
    amount = str(cents // 100) if currency == "VND" else f"{cents // 100}.{cents % 100:02d}"
    response = await client.post(
        "/api/loans",
        content=f'{{"borrower_id": "b{rng.randrange(5)}", "amount": {amount},'
        f' "currency": "{currency}", "term_months": {rng.randrange(1, 13)},'
        f' "interest_rate_apr": {rng.randrange(0, 40)}}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


async def _transition(client: httpx.AsyncClient, session: AsyncSession, rng: random.Random) -> None:
    ids = await loan_ids(session)
    if ids:
        response = await client.post(f"/api/loans/{rng.choice(ids)}/{rng.choice(list(LoanAction))}")
        assert response.status_code in (200, 409)


async def _pay(client: httpx.AsyncClient, session: AsyncSession, rng: random.Random) -> None:
    # A payment on a disbursed loan that has a schedule: it moves the loan's outstanding
    # principal and oldest unpaid due date, or repays it.
    rows = await session.execute(
        text(
            "SELECT id, currency FROM loans WHERE status = 'disbursed'"
            " AND term_months IS NOT NULL AND interest_rate_apr IS NOT NULL ORDER BY id"
        )
    )
    loans = rows.all()
    if loans:
        loan_id, currency = rng.choice(loans)
        amount = rng.randrange(1, 2_000_000) / (1 if currency == "VND" else 100)
        response = await client.post(
            f"/api/loans/{loan_id}/repayments",
            json={"amount": f"{amount:.{0 if currency == 'VND' else 2}f}"},
        )
        assert response.status_code in (201, 422), response.text


async def _sql_update(session: AsyncSession, rng: random.Random) -> None:
    # Several rows at once, across keys: amounts, currencies, and statuses in bulk.
    statement = rng.choice(
        [
            "UPDATE loans SET amount = amount + 0.01 WHERE amount < 49999 AND currency <> 'VND'",
            "UPDATE loans SET currency = 'USD' WHERE currency = 'KES' AND amount < 20000",
            "UPDATE loans SET status = 'rejected', updated_at = created_at"
            " WHERE status IN ('pending', 'approved')",
            "UPDATE loans SET borrower_id = borrower_id || 'x'",
            # Disbursed loans made long ago, with a schedule: some fall more than 30 or 90 days
            # behind, and some have paid part of their principal.
            "UPDATE loans SET term_months = 6, interest_rate_apr = 10,"
            " created_at = created_at - interval '100 days',"
            " disbursed_at = disbursed_at - (amount::int % 150) * interval '1 day'"
            " WHERE status = 'disbursed'",
            "UPDATE loans SET outstanding_principal = amount / 2,"
            " oldest_unpaid_due = (disbursed_at AT TIME ZONE 'UTC')::date + (amount::int % 200)"
            " WHERE status = 'disbursed'",
        ]
    )
    await session.execute(text(statement))


async def _sql_delete(session: AsyncSession, rng: random.Random) -> None:
    ids = await loan_ids(session)
    doomed = rng.sample(ids, min(len(ids), rng.randrange(1, 4)))
    await session.execute(text(HISTORY_ASIDE))
    await session.execute(text("DELETE FROM loans WHERE id::text = ANY(:ids)"), {"ids": doomed})


async def _bulk_insert(session: AsyncSession, rng: random.Random) -> None:
    await session.execute(
        text(
            "INSERT INTO loans (id, borrower_id, amount, currency, status, disbursed_at)"
            " SELECT gen_random_uuid(), 'bulk', (n * 7 % 3000 + 1) / 100.0, :currency,"
            " CASE WHEN n % 3 = 0 THEN 'repaid' ELSE 'pending' END,"
            " CASE WHEN n % 3 = 0 THEN now() END"
            " FROM generate_series(1, :count) AS n"
        ),
        {"currency": rng.choice([*CURRENCIES[:3], "GHS"]), "count": rng.randrange(1, 60)},
    )


@pytest.mark.parametrize("seed", range(6))
async def test_stats_equal_a_full_scan_after_any_sequence_of_changes(
    client: httpx.AsyncClient, session: AsyncSession, seed: int
) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        operation = rng.choices(
            ["create", "transition", "update", "delete", "bulk", "pay"],
            weights=[8, 10, 3, 2, 1, 6],
        )[0]
        if operation == "pay":
            await _pay(client, session, rng)
        elif operation == "create":
            await _create(client, rng)
        elif operation == "transition":
            await _transition(client, session, rng)
        elif operation == "update":
            await _sql_update(session, rng)
        elif operation == "delete":
            await _sql_delete(session, rng)
        else:
            await _bulk_insert(session, rng)
        assert await served_stats(client) == await scanned_stats(session), operation


async def test_currency_whose_loans_are_all_deleted_leaves_the_stats(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await client.post("/api/loans", json={"borrower_id": "b", "amount": 10, "currency": "USD"})
    await client.post("/api/loans", json={"borrower_id": "b", "amount": 20, "currency": "INR"})
    await session.execute(text(HISTORY_ASIDE))
    await session.execute(text("DELETE FROM loans WHERE currency = 'USD'"))

    stats = await served_stats(client)

    assert stats["by_currency"] == {"INR": 1}
    assert stats["amount_by_currency"] == {"INR": Decimal("20.00")}


async def test_truncate_empties_the_stats(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await client.post("/api/loans", json={"borrower_id": "b", "amount": 10, "currency": "USD"})
    await session.execute(text(HISTORY_ASIDE))
    await session.execute(text("TRUNCATE loans CASCADE"))

    stats = await served_stats(client)

    assert (stats["total_loans"], stats["by_currency"]) == (0, {})


async def test_stats_stay_exact_under_concurrent_creates_and_transitions(
    committed_client: httpx.AsyncClient,
) -> None:
    body = {"borrower_id": "b", "amount": "123.45", "currency": "KES"}
    created = await asyncio.gather(
        *(committed_client.post("/api/loans", json=body) for _ in range(30))
    )
    ids = [response.json()["id"] for response in created]
    await asyncio.gather(
        *(committed_client.post(f"/api/loans/{loan_id}/approve") for loan_id in ids[:20]),
        *(committed_client.post("/api/loans", json=body) for _ in range(10)),
    )

    stats = await served_stats(committed_client)

    assert stats["total_loans"] == 40
    assert stats["by_status"]["approved"] == 20
    assert stats["by_status"]["pending"] == 20
    assert stats["amount_by_currency"] == {"KES": Decimal("4938.00")}
