"""Opaque keyset cursors: where a page of the loan list ends, for the filters it was made for.

A cursor carries the (created_at, id) of the last loan of a page, so the next page starts
right after it through the list index, however deep it is. It is URL-safe base64 of a
version byte, the timestamp in microseconds, the id, a digest of the listing's filters and an
HMAC-SHA256 (cut to 128 bits) of all of those under a key from settings. A cursor cannot be
forged or edited without the key, nor replayed with other filters than its page's.
Keys rotate: the first signs, any verifies, so cursors in flight survive a new key.
"""

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_VERSION = 2
_FILTERS_BYTES = 8
_PAYLOAD = struct.Struct(f">Bq16s{_FILTERS_BYTES}s")
_MAC_BYTES = 16
_ENCODED_LENGTH = len(base64.urlsafe_b64encode(bytes(_PAYLOAD.size + _MAC_BYTES)).rstrip(b"="))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_A_CURSOR = "must be copied unchanged from a Link header of this API"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the list order (`created_at` DESC, `id` DESC): the last loan already seen."""

    created_at: datetime
    id: uuid.UUID


def _filters_digest(filters: bytes) -> bytes:
    return hashlib.blake2b(filters, digest_size=_FILTERS_BYTES).digest()


class CursorCodec:
    """Cursors signed with the first of `keys` and verified with any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or not all(keys):
            raise ValueError("a cursor needs at least one non-empty signing key")
        self._keys = tuple(keys)

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.digest(key, payload, "sha256")[:_MAC_BYTES]

    def encode(self, position: Position, filters: bytes) -> str:
        """The opaque cursor that resumes a listing filtered by `filters` after `position`."""
        micros = (position.created_at - _EPOCH) // timedelta(microseconds=1)
        payload = _PAYLOAD.pack(_VERSION, micros, position.id.bytes, _filters_digest(filters))
        signed = payload + self._mac(self._keys[0], payload)
        return base64.urlsafe_b64encode(signed).rstrip(b"=").decode("ascii")

    def decode(self, cursor: str, filters: bytes) -> Position:
        """The position a cursor from `encode` names, if it was made for `filters`;
        ValueError saying what is wrong otherwise."""
        if len(cursor) != _ENCODED_LENGTH or not cursor.isascii():
            raise ValueError(_NOT_A_CURSOR)
        try:
            raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        except binascii.Error as error:
            raise ValueError(_NOT_A_CURSOR) from error
        # Spare bits in the last character would give several spellings of one cursor.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != cursor:
            raise ValueError(_NOT_A_CURSOR)
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        if not any(hmac.compare_digest(mac, self._mac(key, payload)) for key in self._keys):
            raise ValueError(
                "was altered, or is not from this API; copy it unchanged from a Link header"
            )
        version, micros, id_bytes, filters_digest = _PAYLOAD.unpack(payload)
        if version != _VERSION:
            raise ValueError(_NOT_A_CURSOR)
        if not hmac.compare_digest(filters_digest, _filters_digest(filters)):
            raise ValueError(
                "was made for other filters; send it with the status, currency, borrower_id, "
                "created_after and created_before of the request whose Link header gave it"
            )
        try:
            created_at = _EPOCH + timedelta(microseconds=micros)
        except OverflowError as error:
            raise ValueError(_NOT_A_CURSOR) from error
        return Position(created_at, uuid.UUID(bytes=id_bytes))
