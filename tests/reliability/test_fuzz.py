"""Schemathesis against the running service: every operation, generated inputs, no 5xx,
and every answer as documented (status, content type, headers, body schema)."""

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support import LiveServer, create_key, live_server

# A deeper run: FUZZ_EXAMPLES=2000 uv run pytest tests/reliability/test_fuzz.py
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "150"))
MINIMUM_REQUESTS = 1000


@pytest.fixture
def fuzzed_server(committed_database_url: str) -> Iterator[tuple[LiveServer, str]]:
    """The real server, requiring API keys, with a key that has every scope."""
    key = asyncio.run(create_key(committed_database_url))
    env = {"DATABASE_URL": committed_database_url, "AUTH_REQUIRED": "true"}
    with live_server(env) as server:
        yield server, key


def test_every_operation_answers_as_documented(
    fuzzed_server: tuple[LiveServer, str],
) -> None:
    server, key = fuzzed_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    sent: Counter[str] = Counter()

    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            sent[case.operation.label] += 1
            # A cursor is opaque: only one minted by this API (in a Link header) is valid,
            # and the tests of paging cover forged ones.
            if case.query:
                case.query.pop("cursor", None)
            # Generated keys repeat across cases, and a key reused for another request is
            # refused by design; each case is a new request, so it gets a key of its own.
            if case.headers and "idempotency-key" in {name.lower() for name in case.headers}:
                case.headers = {
                    name: value
                    for name, value in case.headers.items()
                    if name.lower() != "idempotency-key"
                } | {"Idempotency-Key": str(uuid.uuid4())}
            case.call_and_validate(base_url=server.url, headers=headers)

        fuzz()

    assert len(sent) == len(list(schema.get_all_operations()))
    assert sum(sent.values()) >= MINIMUM_REQUESTS, sent
