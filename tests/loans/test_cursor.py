"""Cursors name a position in the list order and refuse anything they did not produce."""

import base64
import uuid
from datetime import UTC, datetime

import pytest

from branchloans.loans.cursor import Position, decode_cursor, encode_cursor

POSITION = Position(
    datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
    uuid.UUID("6f1c2a4e-8d0b-4d8e-9a53-1f0e2c7b9d11"),
)


def _flip_byte(cursor: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_cursor_round_trips_to_the_microsecond() -> None:
    assert decode_cursor(encode_cursor(POSITION)) == POSITION


def test_cursor_is_url_safe_text() -> None:
    cursor = encode_cursor(POSITION)

    assert cursor.isascii()
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_cursor_of_a_time_before_1970_round_trips() -> None:
    early = Position(datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC), uuid.uuid4())

    assert decode_cursor(encode_cursor(early)) == early


@pytest.mark.parametrize("index", [0, 3, 12, 25])
def test_cursor_with_any_byte_changed_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match="Link header"):
        decode_cursor(_flip_byte(encode_cursor(POSITION), index))


@pytest.mark.parametrize(
    "cursor",
    ["", "abc", "not a cursor at all, not even base64!!!", "é" * 39, "=" * 39],
)
def test_text_that_is_no_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="Link header"):
        decode_cursor(cursor)


def test_cursor_cut_short_or_extended_is_refused() -> None:
    cursor = encode_cursor(POSITION)

    for altered in (cursor[:-1], cursor + "A"):
        with pytest.raises(ValueError, match="Link header"):
            decode_cursor(altered)


def test_second_spelling_of_a_cursor_is_refused() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    cursor = encode_cursor(POSITION)
    # The last character carries two unused bits; setting one decodes to the same bytes.
    respelled = cursor[:-1] + alphabet[alphabet.index(cursor[-1]) ^ 1]

    with pytest.raises(ValueError, match="Link header"):
        decode_cursor(respelled)
