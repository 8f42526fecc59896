"""Schemathesis with hostile strings in every string parameter of every operation (body
fields, query filters, path parameters): NUL, lone surrogates, U+FFFF, bidi and other
control characters, very long strings. No 5xx, every answer as documented.

In process (ASGI) against a real database, so thousands of cases take seconds.
"""

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance

from branchloans.app import create_app
from tests.support import create_key, make_settings

# `make fuzz` sets FUZZ_STRING_EXAMPLES for a run of at least 20,000 cases.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_STRING_EXAMPLES", "300"))
MINIMUM_CASES = int(os.environ.get("FUZZ_STRING_MINIMUM_CASES", "3000"))

# What a URL can carry: a lone surrogate has no UTF-8 form, so it cannot be percent-encoded.
_IN_URLS = ["\x00", "\uffff", "\ufffe", "\u202e", "\u2066", "\u200f", "\x1b", "\x7f", "\x85"]
_IN_BODIES = [*_IN_URLS, "\ud800", "\udfff", "\udbff\udbff"]


def _hostile(injections: list[str], around: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(injections),
        st.builds(lambda a, b, c: a + b + c, around, st.sampled_from(injections), around),
        st.builds(
            lambda n, c: c * n,
            st.sampled_from([65, 501, 1001, 20_000]),
            st.sampled_from("x\u202e\uffff"),
        ),
    )


# Unescaped, these would change the URL itself (a fragment, another path, another query).
URL_STRINGS = _hostile(
    _IN_URLS, st.text(st.characters(codec="utf-8", exclude_characters="#/?%&=+"), max_size=8)
)
BODY_STRINGS = _hostile(_IN_BODIES, st.text(max_size=8))


def _poisoned(value: Any, draw: Any, strings: st.SearchStrategy[str]) -> tuple[Any, int]:
    """`value` with every string in it replaced by a hostile one; how many were replaced."""
    if isinstance(value, str):
        return draw(strings), 1
    if isinstance(value, dict):
        pairs = [(key, _poisoned(item, draw, strings)) for key, item in value.items()]
        return {key: item for key, (item, _) in pairs}, sum(count for _, (_, count) in pairs)
    if isinstance(value, list):
        items = [_poisoned(item, draw, strings) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    return value, 0


@pytest.fixture
def app_schema(committed_database_url: str) -> Iterator[tuple[Any, str]]:
    key = asyncio.run(create_key(committed_database_url))
    app = create_app(make_settings(committed_database_url, auth_required=True))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app), key
    finally:
        shutdown_lifespans()


def test_hostile_strings_in_every_parameter_answer_as_documented(
    app_schema: tuple[Any, str],
) -> None:
    schema, key = app_schema
    headers = {"Authorization": f"Bearer {key}"}
    sent: Counter[str] = Counter()
    poisoned: Counter[str] = Counter()

    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(), data=st.data())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case, data: st.DataObject) -> None:
            replaced = 0
            for part, strings in (
                ("body", BODY_STRINGS),
                ("query", URL_STRINGS),
                ("path_parameters", URL_STRINGS),
            ):
                value = getattr(case, part, None)
                if isinstance(value, dict | list | str):
                    new, count = _poisoned(value, data.draw, strings)
                    replaced += count
                    if part == "body":
                        # As JSON text, escaped: schemathesis cannot encode a lone surrogate.
                        new = json.dumps(new).encode()
                    setattr(case, part, new)
            if case.headers and "idempotency-key" in {name.lower() for name in case.headers}:
                case.headers = {
                    name: value
                    for name, value in case.headers.items()
                    if name.lower() != "idempotency-key"
                } | {"Idempotency-Key": str(uuid.uuid4())}
            sent[case.operation.label] += 1
            poisoned[case.operation.label] += replaced > 0
            # The strings are bad on purpose: a 422 is the right answer, not a refusal of
            # valid data.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        fuzz()

    assert sum(sent.values()) >= MINIMUM_CASES, sent
    with_strings = {label for label in sent if poisoned[label]}
    assert with_strings, "no operation had a string to poison"
    assert sum(poisoned.values()) >= MINIMUM_CASES // 2, poisoned
