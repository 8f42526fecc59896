"""The per-key limits shared by workers through Postgres. The workers here are `SharedLimits`
on one database that never sync by themselves: a test syncs them when it says so, and a
worker whose allowance of a key runs out syncs once (once per key and minute) to claim more."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from branchloans.auth import sharing
from branchloans.auth.metrics import KeyLimitMetrics
from branchloans.auth.quotas import KeyQuotas, TooManyRequestsError
from branchloans.auth.sharing import SharedLimits
from branchloans.db import Database
from branchloans.observability.metrics import Metrics
from tests.support import make_settings

Workers = Callable[..., Awaitable[list[SharedLimits]]]


@pytest.fixture
async def shared_database(committed_database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(make_settings(committed_database_url))
    yield database
    await database.close()


@pytest.fixture
async def workers(shared_database: Database) -> AsyncIterator[Workers]:
    """Start `count` workers with the limits given, each seeing all the others; they leave
    at the end of the test, so the next test's workers do not count them."""
    started: list[SharedLimits] = []

    async def start(count: int, **limits: object) -> list[SharedLimits]:
        settings = make_settings(
            "postgresql+asyncpg://unused/unused",
            key_rate_window_seconds=3600,  # no window ends within a test
            key_limits_sync_seconds=60,  # a spent allowance claims more once per test
            **{"key_rate_limit": 0, "key_concurrency_limit": 0, **limits},
        )
        new = [
            SharedLimits(KeyQuotas(settings), shared_database, KeyLimitMetrics(Metrics()))
            for _ in range(count)
        ]
        started.extend(new)
        for worker in new:
            await worker.join()
        await _sync(*new)
        return new

    yield start
    for worker in started:
        await worker.leave()


async def _sync(*workers: SharedLimits) -> None:
    for worker in workers:
        await worker.sync()


async def _admit_all(worker: SharedLimits, key: str) -> int:
    """Requests of `key` the worker admits now, until it refuses one."""
    admitted = 0
    while True:
        try:
            await worker.quotas.admit(key)
        except TooManyRequestsError:
            return admitted
        admitted += 1


def _key() -> str:
    return f"shared-key-{uuid.uuid4().hex[:8]}"


async def test_a_keys_rate_is_one_limit_for_every_worker(workers: Workers) -> None:
    three = await workers(3, key_rate_limit=10)
    key = _key()

    admitted = 0
    for _ in range(10):  # rounds of: every worker admits what it may, then all sync
        this_round = sum([await _admit_all(worker, key) for worker in three])
        await _sync(*three)
        admitted += this_round
        if not this_round:
            break

    assert admitted == 10


async def test_a_worker_whose_allowance_ran_out_claims_what_the_others_do_not_hold(
    workers: Workers,
) -> None:
    busy, idle = await workers(2, key_rate_limit=10)
    key = _key()

    admitted = await _admit_all(busy, key)  # its first allowance, then one claim
    await _sync(busy, idle)

    assert admitted == 9  # 10, less the idle worker's first allowance
    assert await _admit_all(idle, key) == 1


async def test_a_spent_allowance_claims_no_more_when_the_key_has_none_left(
    workers: Workers, shared_database: Database
) -> None:
    (worker,) = await workers(1, key_rate_limit=3)
    key = _key()
    syncs = 0
    claim = worker.claim

    async def counted_claim() -> None:
        nonlocal syncs
        syncs += 1
        await claim()

    worker.quotas.claim = counted_claim

    assert await _admit_all(worker, key) == 3
    assert await _admit_all(worker, key) == 0
    assert syncs == 1  # after its first allowance; none once the key's 3 were spent


async def test_requests_in_flight_on_another_worker_count_against_the_key(
    workers: Workers,
) -> None:
    holder, other = await workers(2, key_concurrency_limit=2)
    key = _key()
    await holder.quotas.admit(key)
    await holder.quotas.admit(key)
    await _sync(holder, other)

    with pytest.raises(TooManyRequestsError):
        await other.quotas.admit(key)
    holder.quotas.release(key)
    holder.quotas.release(key)
    await _sync(holder, other)
    await other.quotas.admit(key)  # the places came free


async def test_workers_that_took_a_keys_places_at_once_come_down_to_a_fair_share(
    workers: Workers,
) -> None:
    first, second = await workers(2, key_concurrency_limit=4)
    key = _key()
    await first.quotas.admit(key)
    await first.quotas.admit(key)
    assert await _admit_all(second, key) == 4  # before either knows of the other's requests
    await _sync(first, second, first)

    assert await _admit_all(first, key) == 0
    assert await _admit_all(second, key) == 0
    for _ in range(3):
        second.quotas.release(key)
    assert await _admit_all(second, key) == 1  # back up to its half of the places


async def test_a_worker_that_left_still_counts_what_it_admitted(workers: Workers) -> None:
    leaving, staying = await workers(2, key_rate_limit=4)
    key = _key()
    admitted = await _admit_all(leaving, key)

    await leaving.leave()
    await _sync(staying)

    assert admitted == 3  # 4, less the staying worker's first allowance
    assert await _admit_all(staying, key) == 1


async def test_a_worker_that_left_frees_its_places(workers: Workers) -> None:
    leaving, staying = await workers(2, key_concurrency_limit=2)
    key = _key()
    await leaving.quotas.admit(key)
    await leaving.quotas.admit(key)
    await _sync(leaving, staying)
    assert await _admit_all(staying, key) == 0

    await leaving.leave()
    await _sync(staying)

    assert await _admit_all(staying, key) == 2


async def test_admissions_a_failed_sync_could_not_write_are_written_by_the_next(
    workers: Workers,
) -> None:
    worker, other = await workers(2, key_rate_limit=4)
    key = _key()
    await worker.quotas.admit(key)
    unreachable = await Database.open(
        make_settings("postgresql+asyncpg://postgres@127.0.0.1:9/none", db_connect_timeout=1)
    )
    with pytest.raises(OSError):
        await sharing.sync(worker.quotas, unreachable)
    await unreachable.close()

    await _sync(worker, other)

    # 4, less the one admitted before the failed sync.
    assert await _admit_all(worker, key) + await _admit_all(other, key) == 3
