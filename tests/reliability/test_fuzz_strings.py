"""Schemathesis with hostile strings in every string parameter of every operation (body
fields, query filters, path parameters): NUL, lone surrogates, U+FFFF, bidi and other
control characters, very long strings; hostile headers (entity tags of thousands of digits,
values past the header bound, unsafe request ids, odd keys); and times at the edges of what
UTC can hold once their offset is applied. No 5xx, every answer as documented.

In process (ASGI) against a real database, so thousands of cases take seconds.
"""

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
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


# Header values as they can cross the wire: printable ASCII (h11 refuses control bytes).
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
HEADER_STRINGS = st.one_of(
    st.sampled_from(["*", 'W/"1"', '"1", "2"', '""', ",", "../../etc/passwd", "a:b=c/d+e"]),
    # An entity tag of many digits: past 4300, Python's int() refuses to parse them.
    st.builds(
        lambda n: '"' + "9" * n + '"', st.sampled_from([10, 11, 255, 4301, 5000, 8190, 9000])
    ),
    st.builds(lambda c, n: c * n, st.sampled_from('x9,"'), st.sampled_from([129, 257, 8193])),
    _HEADER_TEXT,
)
# The headers each case may carry, beside those the operation declares.
EXTRA_HEADERS = ("X-Request-ID", "If-Match", "If-None-Match")


def _offset_time(moment: datetime, minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{moment.isoformat()}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# Times whose UTC instant may fall outside 0001-9999 once the offset is applied.
TIME_EDGES = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00-23:59",
            "9999-12-31T23:59:59+23:59",
        ]
    ),
    st.builds(
        _offset_time,
        st.one_of(
            st.datetimes(max_value=datetime(1, 1, 2)),  # noqa: DTZ001 (naive; the offset is added)
            st.datetimes(min_value=datetime(9999, 12, 30)),  # noqa: DTZ001
        ),
        st.integers(-1439, 1439),
    ),
)
TIME_FIELDS = frozenset({"created_after", "created_before", "paid_at"})


def _poisoned(
    value: Any, draw: Any, strings: st.SearchStrategy[str], name: str | None = None
) -> tuple[Any, int]:
    """`value` with every string in it replaced by a hostile one (a time field, sometimes by a
    time at UTC's edges); how many were replaced."""
    if isinstance(value, str):
        if name in TIME_FIELDS:
            return draw(st.one_of(TIME_EDGES, strings)), 1
        return draw(strings), 1
    if isinstance(value, dict):
        pairs = [(key, _poisoned(item, draw, strings, key)) for key, item in value.items()]
        return {key: item for key, (item, _) in pairs}, sum(count for _, (_, count) in pairs)
    if isinstance(value, list):
        items = [_poisoned(item, draw, strings, name) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    return value, 0


def _hostile_headers(headers: dict[str, str] | None, draw: Any) -> dict[str, str]:
    """The case's headers and a few more, each made hostile at random, else left as generated
    (the extra ones out). A kept Idempotency-Key is made fresh, since a generated one repeats
    across cases and a reused key is refused by design."""
    hostile = dict(headers or {})
    present = {name.lower() for name in hostile}
    for name in [*hostile, *(extra for extra in EXTRA_HEADERS if extra.lower() not in present)]:
        if draw(st.booleans()):
            hostile[name] = draw(HEADER_STRINGS)
        elif name.lower() == "idempotency-key":
            hostile[name] = str(uuid.uuid4())
    return hostile


@pytest.fixture
def app_schema(committed_database_url: str) -> Iterator[tuple[Any, str]]:
    key = asyncio.run(create_key(committed_database_url))
    app = create_app(make_settings(committed_database_url, auth_required=True))
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        # A header over the bound is refused with 431 (documented on every operation) before
        # anything else is checked: a rejection of bad data like a 400 or a 422.
        rejection = schema.config.checks.negative_data_rejection
        rejection.expected_statuses = [*rejection.expected_statuses, "431"]
        yield schema, key
    finally:
        shutdown_lifespans()


def test_hostile_strings_in_every_parameter_answer_as_documented(
    app_schema: tuple[Any, str],
) -> None:
    schema, key = app_schema
    headers = {"Authorization": f"Bearer {key}"}
    sent: Counter[str] = Counter()
    poisoned: Counter[str] = Counter()
    headers_sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

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
            case.headers = _hostile_headers(case.headers, data.draw)
            # Now and then a hostile key: a header past the bound must be a 431, not a lookup.
            authorization = (
                {"Authorization": f"Bearer {data.draw(HEADER_STRINGS)}"}
                if data.draw(st.integers(0, 9)) == 0
                else headers
            )
            sent[case.operation.label] += 1
            poisoned[case.operation.label] += replaced > 0
            headers_sent[case.operation.label] += len(case.headers)
            # The strings are bad on purpose: a 422 is the right answer, not a refusal of
            # valid data.
            response = case.call_and_validate(
                headers=authorization, excluded_checks=[positive_data_acceptance]
            )
            statuses[response.status_code] += 1

        fuzz()

    assert sum(sent.values()) >= MINIMUM_CASES, sent
    with_strings = {label for label in sent if poisoned[label]}
    assert with_strings, "no operation had a string to poison"
    assert sum(poisoned.values()) >= MINIMUM_CASES // 2, poisoned
    assert sum(headers_sent.values()) >= MINIMUM_CASES, headers_sent
    # The header bound and the Idempotency-Key / ETag checks were reached, never a 5xx.
    assert {431, 422} <= statuses.keys(), statuses
    assert not [status for status in statuses if status >= 500], statuses
