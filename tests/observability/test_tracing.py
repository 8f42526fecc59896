"""Tracing in process: the SDK's in-memory exporter receives the spans of real requests."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import make_url

from branchloans.app import create_app
from branchloans.auth.models import Scope
from branchloans.migrate import asyncpg_dsn
from branchloans.observability import tracing
from tests.loans.test_router import VALID_LOAN
from tests.support import EMPTY_TABLES, SERVER_URL, create_key, make_settings, serving

REMOTE_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_PARENT_ID = "00f067aa0ba902b7"
SAMPLED_REQUESTS = 1000
SAMPLED = 0x01  # the W3C trace flag


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every span kept in memory as it ends."""
    memory = InMemorySpanExporter()
    tracing.start_tracing(SimpleSpanProcessor(memory))
    yield memory
    tracing.stop_tracing()


@pytest.fixture
async def traced(
    exporter: InMemorySpanExporter, committed_database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of a traced app that requires API keys, and a key for it; rows are removed."""
    app = create_app(make_settings(committed_database_url, auth_required=True))
    key = await create_key(committed_database_url, *Scope)
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        ):
            http.headers["Authorization"] = f"Bearer {key}"
            yield http, key
    finally:
        connection = await asyncpg.connect(asyncpg_dsn(committed_database_url))
        try:
            await connection.execute(EMPTY_TABLES)
        finally:
            await connection.close()


def trees(exporter: InMemorySpanExporter) -> list[tuple[ReadableSpan, list[ReadableSpan]]]:
    """Each server span with its children, in the order the requests ended."""
    spans = exporter.get_finished_spans()
    servers = [span for span in spans if span.kind is SpanKind.SERVER]
    return [
        (
            server,
            [
                span
                for span in spans
                if span.parent is not None and span.parent.span_id == server.context.span_id
            ],
        )
        for server in servers
    ]


def only_tree(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one request's server span and its children; then the exporter is emptied."""
    [tree] = trees(exporter)
    exporter.clear()
    return tree


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def events(span: ReadableSpan) -> dict[str, dict[str, Any]]:
    return {event.name: dict(event.attributes or {}) for event in span.events}


def assert_statement_spans(children: list[ReadableSpan], count: int) -> None:
    assert len(children) == count
    for child in children:
        fields = attributes(child)
        assert child.kind is SpanKind.CLIENT
        assert fields["db.system"] == "postgresql"
        assert "$1" in fields["db.statement"] or " FROM " in fields["db.statement"]
        assert isinstance(fields["db.response.returned_rows"], int)


async def test_a_create_is_a_server_span_with_a_span_per_statement_and_a_created_event(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, key = traced
    response = await http.post("/api/loans", json=VALID_LOAN)
    assert response.status_code == 201
    server, children = only_tree(exporter)
    fields = attributes(server)
    assert server.name == "POST /api/loans"
    assert fields["http.route"] == "/api/loans"
    assert fields["http.method"] == "POST"
    assert fields["http.status_code"] == 201
    assert fields[tracing.API_KEY_NAME].startswith("test-")
    assert key not in str(fields)
    # The key is looked up, then the loan and its first event are written in one statement.
    assert_statement_spans(children, 2)
    insert = children[-1]
    assert attributes(insert)["db.response.returned_rows"] == 1
    assert "usr_india_123" not in attributes(insert)["db.statement"]
    assert events(server)["loan.created"]["loan.id"] == response.json()["id"]


async def test_a_list_is_named_by_its_route_with_its_statements_as_children(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, _ = traced
    for _ in range(2):
        assert (await http.post("/api/loans", json=VALID_LOAN)).status_code == 201
    exporter.clear()
    response = await http.get("/api/loans", params={"limit": 5})
    assert response.status_code == 200
    server, children = only_tree(exporter)
    assert server.name == "GET /api/loans"
    assert attributes(server)["http.status_code"] == 200
    assert children
    assert max(attributes(child)["db.response.returned_rows"] for child in children) == 2


async def test_a_lifecycle_action_is_named_by_its_template_and_records_the_transition(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, _ = traced
    loan_id = (await http.post("/api/loans", json=VALID_LOAN)).json()["id"]
    exporter.clear()
    response = await http.post(f"/api/loans/{loan_id}/approve")
    assert response.status_code == 200
    server, children = only_tree(exporter)
    assert server.name == "POST /api/loans/{loan_id}/approve"
    assert loan_id not in server.name
    assert events(server)["loan.transition"] == {
        "loan.id": loan_id,
        "loan.action": "approve",
        "loan.from_status": "pending",
        "loan.to_status": "approved",
    }
    # The loan is locked, then changed with its event (the key was cached by the create).
    assert_statement_spans(children, 2)
    lock, change = children
    assert "FOR UPDATE" in attributes(lock)["db.statement"]
    assert attributes(change)["db.response.returned_rows"] == 1


async def test_an_idempotent_replay_is_an_event_on_the_span_of_the_repeat(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, _ = traced
    headers = {"Idempotency-Key": "trace-replay-1"}
    first = await http.post("/api/loans", json=VALID_LOAN, headers=headers)
    exporter.clear()
    repeat = await http.post("/api/loans", json=VALID_LOAN, headers=headers)
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.json()["id"] == first.json()["id"]
    server, children = only_tree(exporter)
    assert events(server)["idempotency.replay"] == {"http.response.status_code": 201}
    assert "loan.created" not in events(server)
    assert children


async def test_a_problem_is_recorded_on_the_span_and_its_body_carries_the_trace_id(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, _ = traced
    response = await http.post("/api/loans", json={**VALID_LOAN, "amount": -1})
    assert response.status_code == 422
    server, _ = only_tree(exporter)
    assert attributes(server)[tracing.PROBLEM_TYPE] == response.json()["type"]
    assert response.json()["trace_id"] == f"{server.context.trace_id:032x}"


async def test_an_incoming_traceparent_is_continued_and_the_response_names_the_server_span(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, _ = traced
    incoming = f"00-{REMOTE_TRACE_ID}-{REMOTE_PARENT_ID}-01"
    response = await http.get("/api/loans", headers={"traceparent": incoming})
    server, children = only_tree(exporter)
    assert f"{server.context.trace_id:032x}" == REMOTE_TRACE_ID
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == REMOTE_PARENT_ID
    assert all(child.context.trace_id == server.context.trace_id for child in children)
    assert response.headers["traceparent"] == (
        f"00-{REMOTE_TRACE_ID}-{server.context.span_id:016x}-01"
    )


async def test_without_a_traceparent_a_new_trace_is_started_and_returned(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, _ = traced
    response = await http.get("/liveness")
    server, _ = only_tree(exporter)
    assert server.parent is None
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & SAMPLED
    assert (trace_id, span_id) == (
        f"{server.context.trace_id:032x}",
        f"{server.context.span_id:016x}",
    )


async def test_a_client_problem_is_recorded_without_marking_the_span_failed(
    traced: tuple[httpx.AsyncClient, str], exporter: InMemorySpanExporter
) -> None:
    http, _ = traced
    # A bad key is looked up like a good one; a loan id that is not a loan is a 404, not an error.
    response = await http.get("/api/loans/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    server, children = only_tree(exporter)
    assert server.status.status_code is not StatusCode.ERROR
    assert attributes(server)[tracing.PROBLEM_TYPE].endswith("loan-not-found")
    assert all(child.status.status_code is not StatusCode.ERROR for child in children)


async def test_the_sampling_ratio_from_the_environment_is_respected(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    memory = InMemorySpanExporter()
    tracing.start_tracing(SimpleSpanProcessor(memory))
    try:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            traceparents = set()
            for _ in range(SAMPLED_REQUESTS):
                response = await http.get("/liveness")
                traceparents.add(response.headers["traceparent"])
    finally:
        tracing.stop_tracing()
    exported = len(memory.get_finished_spans())
    sampled = sum(bool(int(parent[-2:], 16) & SAMPLED) for parent in traceparents)
    # 100 expected; the bounds are more than four standard deviations (9.5) away.
    assert 60 <= exported <= 140
    # Unsampled requests still get a trace id (for their logs) and say it was not sampled.
    assert len(traceparents) == SAMPLED_REQUESTS
    assert sampled == exported


async def test_a_server_problem_marks_the_span_failed_with_its_type(
    exporter: InMemorySpanExporter,
) -> None:
    unreachable = make_url(SERVER_URL).set(host="127.0.0.1", port=1)
    async with serving(make_settings(unreachable.render_as_string(hide_password=False))) as http:
        response = await http.get("/api/loans")
    assert response.status_code == 503
    server, _ = only_tree(exporter)
    assert server.status.status_code is StatusCode.ERROR
    assert attributes(server)[tracing.PROBLEM_TYPE].endswith("database-unavailable")
    assert response.json()["trace_id"] == f"{server.context.trace_id:032x}"
