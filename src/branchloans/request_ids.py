"""Request ids: taken from the caller when they are a safe token, else generated; the id
used is the one echoed, logged and stored with a loan's events."""

import random
import re

import structlog

MAX_REQUEST_ID_LENGTH = 128

# Letters, digits, dot, underscore and hyphen, starting with a letter or digit: a token that
# can forge no log line, header or path (`../../etc/passwd` is replaced) wherever it is stored.
_SANE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_REQUEST_ID_LENGTH - 1}}}")


_VERSION_4 = 0x4 << 76
_RFC_4122_VARIANT = 0x8 << 60
_FIXED_BITS = (0xF << 76) | (0xC << 60)


def new_request_id() -> str:
    """A random UUID4 in its canonical text form.

    An id names a request; it protects nothing, so Python's PRNG (reseeded in every forked or
    spawned worker) serves, at a fraction of the cost of uuid.uuid4()'s system call.
    """
    bits = random.getrandbits(128) & ~_FIXED_BITS | _VERSION_4 | _RFC_4122_VARIANT
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def choose_request_id(offered: bytes | None) -> str:
    """The caller's id when it is a sane token, otherwise a fresh UUID4."""
    if offered is not None and len(offered) <= MAX_REQUEST_ID_LENGTH:
        candidate = offered.decode("latin-1")
        if _SANE.fullmatch(candidate):
            return candidate
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request being handled, as bound for the logs; None outside a request."""
    request_id: str | None = structlog.contextvars.get_contextvars().get("request_id")
    return request_id
