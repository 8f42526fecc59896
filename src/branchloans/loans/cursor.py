"""Opaque keyset cursors: where a page of the loan list ends.

A cursor carries the (created_at, id) of the last loan of a page, so the next page starts
right after it through the list index, however deep it is. It is URL-safe base64 of a
version byte, the timestamp in microseconds, the id, and a short digest of those bytes.
The digest catches a cursor that was truncated or edited; it is no secret, and needs none:
a cursor only says where to resume a listing the client may read anyway.
"""

import base64
import binascii
import hashlib
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_VERSION = 1
_PAYLOAD = struct.Struct(">Bq16s")
_DIGEST_BYTES = 4
_ENCODED_LENGTH = len(base64.urlsafe_b64encode(bytes(_PAYLOAD.size + _DIGEST_BYTES)).rstrip(b"="))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_A_CURSOR = "must be copied unchanged from a Link header of this API"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the list order (`created_at` DESC, `id` DESC): the last loan already seen."""

    created_at: datetime
    id: uuid.UUID


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_DIGEST_BYTES).digest()


def encode_cursor(position: Position) -> str:
    """The opaque cursor that resumes a listing after `position`."""
    micros = (position.created_at - _EPOCH) // timedelta(microseconds=1)
    payload = _PAYLOAD.pack(_VERSION, micros, position.id.bytes)
    return base64.urlsafe_b64encode(payload + _digest(payload)).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor from `encode_cursor` names; ValueError for anything else."""
    if len(cursor) != _ENCODED_LENGTH or not cursor.isascii():
        raise ValueError(_NOT_A_CURSOR)
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except binascii.Error as error:
        raise ValueError(_NOT_A_CURSOR) from error
    # Spare bits in the last character would give several spellings of one cursor.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != cursor:
        raise ValueError(_NOT_A_CURSOR)
    payload, digest = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
    version, micros, id_bytes = _PAYLOAD.unpack(payload)
    if version != _VERSION or digest != _digest(payload):
        raise ValueError(
            "was altered, or is not from this API; copy it unchanged from a Link header"
        )
    try:
        created_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError as error:
        raise ValueError(_NOT_A_CURSOR) from error
    return Position(created_at, uuid.UUID(bytes=id_bytes))
