"""Reads on a real streaming replica: which reads go there, the lag bound, and a replica
that goes away. One hot standby of the test server serves the whole module."""

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url

from branchloans.migrate import create_database_if_missing, grant_app_role, upgrade_to_head
from tests.deploy.drill import PostgresCluster
from tests.streaming_replica import (
    StreamingReplica,
    query,
    server_files,
    streaming_replica,
)
from tests.support import (
    SERVER_URL,
    Samples,
    database_of_its_own,
    make_settings,
    parse_metrics,
    sample,
    serving,
)

LOAN: dict[str, Any] = {
    "borrower_id": "usr_replicated",
    "amount": "900.00",
    "currency": "KES",
    "term_months": 3,
    "interest_rate_apr": "12.00",
}


@pytest.fixture(scope="module")
def replica() -> Iterator[StreamingReplica]:
    """A hot standby of the test server, streaming from it.

    Only a server on this machine can be copied and configured (`.ci/run`'s, or a developer's);
    GitHub's job runs Postgres in a service container, where the module is skipped.
    """
    if server_files(SERVER_URL) is None:
        pytest.skip("the test server's pg_hba.conf and pg_basebackup are not on this machine")
    with streaming_replica(SERVER_URL) as standby:
        yield standby


@pytest.fixture(scope="module")
def primary_url(replica: StreamingReplica) -> Iterator[str]:
    """A migrated database on the primary, replayed on the replica."""
    with database_of_its_own("replica") as url:
        replica.wait_for_database(make_url(url).database or "")
        yield url


async def _serve(
    primary_url: str, replica: StreamingReplica, max_lag: float, interval: float = 0.2
) -> Any:
    settings = make_settings(
        primary_url,
        database_read_url=replica.database_url(primary_url),
        replica_max_lag_seconds=max_lag,
        replica_check_interval=interval,
    )
    return serving(settings)


async def _replica_state(client: httpx.AsyncClient, wanted: str) -> dict[str, Any]:
    """/readiness's replica report, once it says `wanted` (within 20 s); readiness answers 200
    all along."""
    deadline = time.monotonic() + 20
    while True:
        readiness = await client.get("/readiness")
        assert readiness.status_code == 200, readiness.text
        report: dict[str, Any] = readiness.json()["replica"]
        if report["state"] == wanted:
            return report
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.1)


@pytest.fixture
async def client(primary_url: str, replica: StreamingReplica) -> AsyncIterator[httpx.AsyncClient]:
    """The app reading from the replica, which may lag up to a minute, once it uses it."""
    async with await _serve(primary_url, replica, max_lag=60) as http:
        await _replica_state(http, "in_use")
        yield http


@pytest.fixture
def paused(replica: StreamingReplica, primary_url: str) -> Iterator[None]:
    """Replay paused on the replica for the test: it receives WAL and applies none of it."""
    database = make_url(primary_url).database or "postgres"
    replica.sql("SELECT pg_wal_replay_pause()", database)
    try:
        yield
    finally:
        replica.sql("SELECT pg_wal_replay_resume()", database)


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {loan["id"] for loan in response.json()}


def _assert_up_but_not_in_use(samples: Samples) -> None:
    """The metrics of a replica that answers but lags: out of use, up, over a second behind."""
    assert sample(samples, "db_replica_in_use") == 0
    assert sample(samples, "db_replica_up") == 1
    lag = sample(samples, "db_replica_lag_seconds")
    assert lag is not None
    assert lag > 1


async def test_stale_tolerant_reads_run_on_the_replica(
    replica: StreamingReplica, primary_url: str
) -> None:
    database = make_url(primary_url).database or ""
    # One lag measurement at startup, then none for the test: the replica's sessions of the
    # service show the last statement each ran.
    async with await _serve(primary_url, replica, max_lag=60, interval=600) as http:
        await _replica_state(http, "in_use")
        listed = await http.get("/api/loans", params={"borrower_id": "usr_nobody"})

        last_statements = replica.sql(
            "SELECT string_agg(query, ' ') FROM pg_stat_activity"
            f" WHERE application_name = 'branchloans' AND datname = '{database}'"
        )

    assert listed.status_code == 200
    assert "FROM loans" in last_statements
    assert "borrower_id" in last_statements


@pytest.fixture
async def replayed_loan(
    client: httpx.AsyncClient, replica: StreamingReplica, primary_url: str
) -> str:
    """A loan of LOAN's borrower the replica has replayed; its id."""
    return await _replayed(client, replica, primary_url)


async def _replayed(http: httpx.AsyncClient, replica: StreamingReplica, primary_url: str) -> str:
    """The id of a loan of LOAN's borrower created now, once the replica has replayed it."""
    loan_id: str = (await http.post("/api/loans", json=LOAN)).json()["id"]
    database = make_url(primary_url).database or ""
    deadline = time.monotonic() + 20
    while not replica.sql(f"SELECT count(*) FROM loans WHERE id = '{loan_id}'", database):
        assert time.monotonic() < deadline, "the loan did not reach the replica"
        await asyncio.sleep(0.1)
    return loan_id


async def test_a_paused_replica_within_the_bound_serves_lists_without_the_newest_write(
    client: httpx.AsyncClient, replayed_loan: str, paused: None
) -> None:
    created = (await client.post("/api/loans", json=LOAN)).json()

    listed = await client.get("/api/loans", params={"borrower_id": LOAN["borrower_id"]})

    assert replayed_loan in _ids(listed)
    assert created["id"] not in _ids(listed)


async def test_a_loan_the_replica_has_not_replayed_is_found_on_the_primary(
    client: httpx.AsyncClient, paused: None
) -> None:
    loan_id = (await client.post("/api/loans", json=LOAN)).json()["id"]

    events = await client.get(f"/api/loans/{loan_id}/events")
    schedule = await client.get(f"/api/loans/{loan_id}/schedule")

    assert events.status_code == 200
    assert [event["to_status"] for event in events.json()] == ["pending"]
    assert schedule.status_code == 200
    assert len(schedule.json()["instalments"]) == LOAN["term_months"]


async def test_the_callers_consistent_reads_see_its_write_at_once(
    client: httpx.AsyncClient, paused: None
) -> None:
    created = await client.post("/api/loans", json=LOAN)
    loan_id = created.json()["id"]

    fetched = await client.get(f"/api/loans/{loan_id}")
    conditional_list = await client.get(
        "/api/loans", params={"borrower_id": LOAN["borrower_id"]}, headers={"If-None-Match": "*"}
    )
    approved = await client.post(f"/api/loans/{loan_id}/approve", headers={"If-Match": '"1"'})

    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert loan_id in _ids(conditional_list)
    assert (approved.status_code, approved.headers["etag"]) == (200, '"2"')


async def test_replay_paused_past_the_bound_moves_reads_to_the_primary(
    primary_url: str, replica: StreamingReplica, paused: None
) -> None:
    async with await _serve(primary_url, replica, max_lag=1) as http:
        created = (await http.post("/api/loans", json=LOAN)).json()

        report = await _replica_state(http, "lagging")
        listed = await http.get("/api/loans", params={"borrower_id": LOAN["borrower_id"]})
        await asyncio.sleep(1.1)  # the gauges are copied every second
        samples = parse_metrics((await http.get("/metrics")).text)

    assert report["lag_seconds"] > report["max_lag_seconds"] == 1
    assert created["id"] in _ids(listed)
    _assert_up_but_not_in_use(samples)


async def test_a_replica_that_catches_up_takes_the_reads_back(
    primary_url: str, replica: StreamingReplica
) -> None:
    database = make_url(primary_url).database or "postgres"
    async with await _serve(primary_url, replica, max_lag=1) as http:
        replica.sql("SELECT pg_wal_replay_pause()", database)
        try:
            await http.post("/api/loans", json=LOAN)
            await _replica_state(http, "lagging")
        finally:
            replica.sql("SELECT pg_wal_replay_resume()", database)

        report = await _replica_state(http, "in_use")

    assert report["lag_seconds"] <= 1


async def test_stopping_the_replica_costs_no_request(
    primary_url: str, replica: StreamingReplica
) -> None:
    async with await _serve(primary_url, replica, max_lag=60) as http:
        await _replica_state(http, "in_use")
        reads = ["/api/loans", "/api/stats", "/api/loans?limit=5"]
        statuses: list[int] = []
        stopping = asyncio.create_task(asyncio.to_thread(replica.stop))
        try:
            while not stopping.done() or len(statuses) < 300:
                answers = await asyncio.gather(*(http.get(path) for path in reads * 4))
                statuses += [answer.status_code for answer in answers]
            await stopping
            report = await _replica_state(http, "unreachable")
            after = await asyncio.gather(*(http.get(path) for path in reads * 4))
        finally:
            await stopping
            replica.start()

    assert set(statuses) == {200}
    assert {answer.status_code for answer in after} == {200}
    assert "lag_seconds" not in report


@pytest.fixture(scope="module")
def app_role_url(primary_url: str) -> Iterator[str]:
    """`primary_url` as a role `branchloans migrate` makes for the API: no superuser."""
    role = f"bl_replica_{uuid.uuid4().hex[:8]}"
    url = make_url(primary_url).set(username=role).render_as_string(hide_password=False)
    asyncio.run(grant_app_role(primary_url, url))
    yield url
    query(primary_url, f'DROP OWNED BY "{role}"')
    query(primary_url, f'DROP ROLE "{role}"')


async def _metrics(http: httpx.AsyncClient) -> Any:
    await asyncio.sleep(1.1)  # the gauges are copied every second
    return parse_metrics((await http.get("/metrics")).text)


async def test_a_replica_cut_off_from_its_primary_hands_its_reads_to_the_primary(
    app_role_url: str, replica: StreamingReplica
) -> None:
    async with await _serve(app_role_url, replica, max_lag=1) as http:
        await _replica_state(http, "in_use")
        replayed = await _replayed(http, replica, app_role_url)
        with replica.cut_off():
            created = (await http.post("/api/loans", json=LOAN)).json()

            report = await _replica_state(http, "lagging")
            listed = await http.get("/api/loans", params={"borrower_id": LOAN["borrower_id"]})
            samples = await _metrics(http)

    assert report["lag_seconds"] > report["max_lag_seconds"] == 1
    assert {replayed, created["id"]} <= _ids(listed)
    _assert_up_but_not_in_use(samples)


async def test_a_replica_back_in_touch_with_its_primary_takes_the_reads_back(
    app_role_url: str, replica: StreamingReplica
) -> None:
    async with await _serve(app_role_url, replica, max_lag=1) as http:
        with replica.cut_off():
            await http.post("/api/loans", json=LOAN)
            await _replica_state(http, "lagging")

        report = await _replica_state(http, "in_use")

    assert report["lag_seconds"] <= 1


async def test_a_role_that_cannot_see_the_wal_receiver_leaves_the_replica_unused(
    app_role_url: str, replica: StreamingReplica
) -> None:
    role = make_url(app_role_url).username
    async with await _serve(app_role_url, replica, max_lag=60) as http:
        await _replica_state(http, "in_use")
        query(SERVER_URL, f'REVOKE pg_read_all_stats FROM "{role}"')
        try:
            report = await _replica_state(http, "unreachable")
        finally:
            query(SERVER_URL, f'GRANT pg_read_all_stats TO "{role}"')

    assert "lag_seconds" not in report


@pytest.fixture(scope="module")
def idle_standby() -> Iterator[tuple[str, StreamingReplica]]:
    """A migrated database on a primary of its own, which nothing writes to, and a standby of
    it: the link between them carries only the keepalives."""
    if server_files(SERVER_URL) is None:
        pytest.skip("the test server's pg_basebackup and initdb are not on this machine")
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        url = cluster.url("branchloans")
        asyncio.run(create_database_if_missing(url))
        upgrade_to_head(url)
        with streaming_replica(url) as standby:
            standby.wait_for_database("branchloans")
            yield url, standby
    finally:
        cluster.remove()


async def test_an_idle_standby_silent_for_longer_than_the_bound_stays_in_use(
    idle_standby: tuple[str, StreamingReplica],
) -> None:
    primary, standby = idle_standby
    async with await _serve(primary, standby, max_lag=1, interval=0.1) as http:
        await _replica_state(http, "in_use")
        # An idle link is silent until the standby pings, half wal_receiver_timeout (3 s) on.
        deadline = time.monotonic() + 20
        while (standby.silent_seconds() or 0) <= 2:
            assert time.monotonic() < deadline, "the standby kept hearing from its primary"
            await asyncio.sleep(0.05)
        report = (await http.get("/readiness")).json()["replica"]

    assert report["state"] == "in_use"
    assert report["lag_seconds"] == 0


@contextmanager
def _partitioned(primary_url: str) -> Iterator[None]:
    """The primary's side of its standby's link falls quiet and takes no new one, as when a
    network partition separates them; the primary keeps running."""
    hba_file = Path(query(primary_url, "SHOW hba_file"))
    hba = hba_file.read_text()
    walsender = query(primary_url, "SELECT pid FROM pg_stat_replication")
    hba_file.write_text(f"host replication all 127.0.0.1/32 reject\n{hba}")
    query(primary_url, "SELECT pg_reload_conf()")
    os.kill(walsender, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(walsender, signal.SIGCONT)
        hba_file.write_text(hba)
        query(primary_url, "SELECT pg_reload_conf()")


async def test_a_standby_whose_primary_falls_silent_is_not_used(
    idle_standby: tuple[str, StreamingReplica],
) -> None:
    primary, standby = idle_standby
    async with await _serve(primary, standby, max_lag=1, interval=0.1) as http:
        await _replica_state(http, "in_use")
        with _partitioned(primary):
            report = await _replica_state(http, "lagging")

    assert report["lag_seconds"] > report["max_lag_seconds"] == 1
