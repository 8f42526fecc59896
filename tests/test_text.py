"""What a stored string may hold: one rule, refused with a message that says which part."""

from typing import Annotated

import pytest
from pydantic import StringConstraints, TypeAdapter, ValidationError

from branchloans.text import LONGEST_TEXT, StoredLine, StoredText

LINE = TypeAdapter[str](StoredLine[Annotated[str, StringConstraints(max_length=64)]])
TEXT = TypeAdapter[str](StoredText[str])


def _refusal(adapter: TypeAdapter[str], value: str) -> str:
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python(value)
    return str(refused.value.errors()[0]["msg"])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("a\x00b", "NUL"),
        ("a\ud800b", "lone surrogate"),
        ("a\x1bb", "control characters"),
        ("a\x85b", "control characters"),
        ("a\nb", "control characters"),
        ("a\u202eb", "bidi override"),
        ("a\u202ab", "bidi override"),
    ],
)
def test_line_refuses_what_makes_no_sense_in_a_line(value: str, says: str) -> None:
    assert says in _refusal(LINE, value)


@pytest.mark.parametrize(
    "value", ["Zoë", "مرحبا\u2067x\u2069", "a\ufffdb", "\U0001f600", "a\uffffb"]
)
def test_line_keeps_any_other_character(value: str) -> None:
    assert LINE.validate_python(value) == value


def test_field_narrows_the_length_with_its_own_message() -> None:
    assert "at most 64 characters" in _refusal(LINE, "x" * 65)


def test_every_stored_string_is_bounded_even_without_a_field_bound() -> None:
    assert TEXT.validate_python("x" * LONGEST_TEXT)
    assert f"at most {LONGEST_TEXT}" in _refusal(TEXT, "x" * (LONGEST_TEXT + 1))


def test_free_text_keeps_tabs_and_line_breaks_but_not_nul() -> None:
    assert TEXT.validate_python("one\ttwo\r\nthree") == "one\ttwo\r\nthree"
    assert "NUL" in _refusal(TEXT, "one\x00two")


@pytest.mark.parametrize("override", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e"])
def test_free_text_refuses_bidi_overrides(override: str) -> None:
    assert "bidi override" in _refusal(TEXT, f"paid {override}in full")
