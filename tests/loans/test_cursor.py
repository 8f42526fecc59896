"""Cursors name a position in the list order, for the filters they were made for, and refuse
anything they did not produce: a forged, edited or foreign cursor, or other filters."""

import base64
import uuid
from datetime import UTC, datetime

import pytest

from branchloans.loans.cursor import CursorCodec, Position

POSITION = Position(
    datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
    uuid.UUID("6f1c2a4e-8d0b-4d8e-9a53-1f0e2c7b9d11"),
)
KEY = b"k" * 32
CODEC = CursorCodec([KEY])
FILTERS = b'{"status":"repaid"}'


def _flip_byte(cursor: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_cursor_round_trips_to_the_microsecond() -> None:
    assert CODEC.decode(CODEC.encode(POSITION, FILTERS), FILTERS) == POSITION


def test_cursor_is_url_safe_text() -> None:
    cursor = CODEC.encode(POSITION, FILTERS)

    assert cursor.isascii()
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_cursor_of_a_time_before_1970_round_trips() -> None:
    early = Position(datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC), uuid.uuid4())

    assert CODEC.decode(CODEC.encode(early, FILTERS), FILTERS) == early


@pytest.mark.parametrize("index", [0, 3, 12, 25, 33, 40, 48])
def test_cursor_with_any_byte_changed_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match="Link header"):
        CODEC.decode(_flip_byte(CODEC.encode(POSITION, FILTERS), index), FILTERS)


def test_cursor_signed_with_another_key_is_refused() -> None:
    forged = CursorCodec([b"f" * 32]).encode(POSITION, FILTERS)

    with pytest.raises(ValueError, match="is not from this API"):
        CODEC.decode(forged, FILTERS)


def test_cursor_made_for_other_filters_is_refused() -> None:
    cursor = CODEC.encode(POSITION, FILTERS)

    with pytest.raises(ValueError, match="made for other filters"):
        CODEC.decode(cursor, b'{"status":"pending"}')


def test_cursor_signed_with_a_retired_key_still_reads_after_rotation() -> None:
    rotated = CursorCodec([b"n" * 32, KEY])
    old = CODEC.encode(POSITION, FILTERS)

    assert rotated.decode(old, FILTERS) == POSITION
    # The new key signs: the old codec cannot read what the rotated one makes.
    with pytest.raises(ValueError, match="is not from this API"):
        CODEC.decode(rotated.encode(POSITION, FILTERS), FILTERS)


@pytest.mark.parametrize("keys", [[], [b""]])
def test_a_codec_needs_a_key(keys: list[bytes]) -> None:
    with pytest.raises(ValueError, match="signing key"):
        CursorCodec(keys)


@pytest.mark.parametrize(
    "cursor",
    ["", "abc", "not a cursor at all, not even base64!!!", "é" * 66, "=" * 66],
)
def test_text_that_is_no_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="Link header"):
        CODEC.decode(cursor, FILTERS)


def test_cursor_cut_short_or_extended_is_refused() -> None:
    cursor = CODEC.encode(POSITION, FILTERS)

    for altered in (cursor[:-1], cursor + "A"):
        with pytest.raises(ValueError, match="Link header"):
            CODEC.decode(altered, FILTERS)


def test_second_spelling_of_a_cursor_is_refused() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    cursor = CODEC.encode(POSITION, FILTERS)
    # The last character carries unused bits; setting one decodes to the same bytes.
    respelled = cursor[:-1] + alphabet[alphabet.index(cursor[-1]) ^ 1]

    with pytest.raises(ValueError, match="Link header"):
        CODEC.decode(respelled, FILTERS)
