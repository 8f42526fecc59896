"""The reference ceiling: the least a FastAPI app can do to answer GET /api/loans/{id}.

One asyncpg pool, one query, orjson, no middleware, no ORM, no validation of the row. The
benchmark serves it exactly like the real service (uvicorn, same workers, uvloop, httptools,
no access log) and reports the service's get-by-id throughput as a fraction of this one's.

    BENCH_DSN=postgresql://postgres@127.0.0.1:5432/db uvicorn bench.ceiling:app --workers 2
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import asyncpg
import orjson
from fastapi import FastAPI, Response

QUERY = (
    "SELECT id, borrower_id, amount, currency, status, term_months, interest_rate_apr,"
    " created_at, updated_at, disbursed_at, version FROM loans WHERE id = $1"
)
POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "15"))


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the pool (the same size as the service's) for the life of the worker."""
    async with asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=1, max_size=POOL_SIZE) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan, openapi_url=None)


@app.get("/api/loans/{loan_id}")
async def get_loan(loan_id: uuid.UUID) -> Response:
    """The loan as JSON, or 404."""
    row = await app.state.pool.fetchrow(QUERY, loan_id)
    if row is None:
        return Response(status_code=404)
    body = dict(row)
    version = body.pop("version")
    return Response(
        orjson.dumps(body, default=_default, option=orjson.OPT_UTC_Z),
        media_type="application/json",
        headers={"ETag": f'"{version}"'},
    )
