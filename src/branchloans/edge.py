"""uvicorn's httptools protocol with the two limits it lacks: header size and header time.

uvicorn bounds headers only in its h11 protocol (`h11_max_incomplete_event_size`), and times
out idle keep-alive connections but never a request whose headers trickle in; httptools, which
we serve with for speed, would buffer a 64 MB header and keep a slow client forever. Written
here because no maintained package adds either to uvicorn.
"""

import asyncio
import json
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from branchloans.config import get_settings

_LINGER_SECONDS = 2.0


def _closing_problem(status: int, title: str, detail: str) -> bytes:
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {title}\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


@cache  # the same bytes for every connection: built once per limit, not per connection
def _too_large(max_header_bytes: int) -> bytes:
    return _closing_problem(
        431,
        "Request Header Fields Too Large",
        f"The request line and headers exceed {max_header_bytes} bytes.",
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Refuse a request line and headers over HTTP_MAX_HEADER_BYTES with 431, and close a
    connection whose headers are not complete HTTP_HEADER_TIMEOUT seconds after it opened (or
    after its previous response), answering 408 when part of a request had come."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._max_header_bytes = settings.http_max_header_bytes
        self._header_timeout = settings.http_header_timeout
        self._too_large = _too_large(self._max_header_bytes)
        self._reading_headers = True
        self._discarding = False
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock on the first request's headers."""
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the header clock with the connection."""
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser no more header bytes than the limit allows."""
        if self._discarding:
            return
        if not self._reading_headers:
            super().data_received(data)
            return
        room = self._max_header_bytes - self._header_bytes
        self._header_bytes += len(data)
        if len(data) <= room:
            super().data_received(data)
            return
        if room > 0:
            super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._reading_headers:  # no end of the headers within the limit
            self._close_with(self._too_large)
            return
        super().data_received(data[room:])  # the headers ended in time: the rest is body

    def on_headers_complete(self) -> None:
        """The headers are in: stop counting and stop the clock."""
        self._reading_headers = False
        self._stop_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        """A keep-alive connection waits for its next request's headers, on the clock again."""
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()

    def _await_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self._header_timeout, self._headers_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if not self._reading_headers or self.transport.is_closing():
            return
        if self._header_bytes:
            self._close_with(
                _closing_problem(
                    408,
                    "Request Timeout",
                    f"The request's headers did not arrive within {self._header_timeout:g} s.",
                )
            )
        else:  # an idle connection, not a request: nothing to answer
            self.transport.close()

    def _close_with(self, response: bytes) -> None:
        """Answer, then close: our side at once, theirs after a short linger in which what
        they still send is dropped; closing on unread bytes would reset the connection and
        lose the answer."""
        self._reading_headers = False
        self._discarding = True
        self._stop_header_timer()
        # Done with: its place under HTTP_LIMIT_CONCURRENCY is free for a real client now.
        self.connections.discard(self)
        self.transport.write(response)
        self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)
