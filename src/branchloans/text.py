"""What a string that reaches SQL or is stored may hold, decided once for every field.

Postgres `text` cannot hold U+0000 and UTF-8 cannot encode a lone surrogate: either would
reach the database as an error, so both are refused as the client's mistake. Control
characters make no sense in a name, key or filter (and tab and line breaks only in free
text), and bidi overrides only disguise what is stored, so they are refused too. Every type
here is bounded in length; a field may narrow it.
"""

import re
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

LONGEST_TEXT = 1000
"""Characters any stored string may have, unless its field allows fewer."""

# Bidi embeddings and overrides (U+202A to U+202E) make text display in another order than
# it is stored, the trick of spoofed names and log lines. Isolates (U+2066 to U+2069) and the
# direction marks only fence or mark a run, as Unicode advises for mixed scripts: kept.
_BIDI_OVERRIDES = r"\u202a-\u202e"
# C0 controls, DEL and C1 controls; free text keeps tab, line feed and carriage return.
_LINE_CONTROLS = r"\x00-\x1f\x7f-\x9f"
_TEXT_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_OVERRIDE = re.compile(f"[{_BIDI_OVERRIDES}]")
LINE_PATTERN = f"^[^{_LINE_CONTROLS}{_BIDI_OVERRIDES}]*$"
TEXT_PATTERN = f"^[^{_TEXT_CONTROLS}{_BIDI_OVERRIDES}]*$"


def _invalid(message: str) -> PydanticCustomError:
    # The problem `type` of every refusal here but length, as the API's other checks name it.
    return PydanticCustomError("invalid_characters", message)


def _refusing(controls: str) -> Any:
    forbidden = re.compile(f"[{controls}]")

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the str validation after this says what is wrong
        if "\x00" in value:
            raise _invalid("must not contain NUL (U+0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid("must not contain a lone surrogate (U+D800 to U+DFFF)") from None
        if forbidden.search(value):
            raise _invalid("must be printable text, without control characters")
        if _OVERRIDE.search(value):
            raise _invalid("must not contain a bidi override (U+202A to U+202E)")
        if len(value) > LONGEST_TEXT:
            raise PydanticCustomError("too_long", f"must be at most {LONGEST_TEXT} characters")
        return value

    return check


BoundedStr = TypeVar("BoundedStr", bound=str)

StoredLine = Annotated[
    BoundedStr,
    BeforeValidator(_refusing(_LINE_CONTROLS)),
    Field(json_schema_extra={"pattern": LINE_PATTERN}),
]
"""One line of text: no NUL, lone surrogate, control character or bidi override; bounded.

Parameterised with the field's own constraints, which apply after these checks:
`StoredLine[Annotated[str, StringConstraints(max_length=64)]]`.
"""

StoredText = Annotated[
    BoundedStr,
    BeforeValidator(_refusing(_TEXT_CONTROLS)),
    Field(json_schema_extra={"pattern": TEXT_PATTERN}),
]
"""Free text: as a line, but tab and line breaks are allowed."""
