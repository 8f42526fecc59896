"""Graceful start and stop: wait for Postgres at startup, drain before stopping on SIGTERM."""

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import structlog
from uvicorn.supervisors.multiprocess import Multiprocess

from branchloans.db import Database

logger = structlog.get_logger(__name__)

_FIRST_RETRY_SECONDS = 0.1
_LONGEST_RETRY_SECONDS = 5.0


async def wait_for_database(database: Database, within_seconds: float) -> None:
    """Return once Postgres answers; retry with exponential backoff for up to
    `within_seconds`.

    Raises the last connection error when the time is up, so the process exits and its
    supervisor (compose, Kubernetes) starts it again.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds
    delay = _FIRST_RETRY_SECONDS
    while True:
        try:
            await database.ping()
            return
        except Exception as error:
            if loop.time() + delay > deadline:
                logger.error("database unreachable, giving up", error=repr(error))
                raise
            logger.warning("database unreachable, retrying", retry_in=delay, error=repr(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LONGEST_RETRY_SECONDS)


@contextmanager
def drain_on_sigterm(draining: threading.Event, seconds: float) -> Iterator[None]:
    """While inside, SIGTERM first sets `draining` (readiness answers 503) and only `seconds`
    later passes the signal to the server, which then stops accepting connections and lets
    the requests in flight finish. A second SIGTERM passes at once.

    Does nothing outside the main thread, where signal handlers cannot be set, or when
    `seconds` is 0.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    server_handler = signal.getsignal(signal.SIGTERM)

    def pass_on(sig: int, frame: FrameType | None) -> None:
        if callable(server_handler):
            server_handler(sig, frame)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        if draining.is_set():
            pass_on(sig, frame)
            return
        draining.set()
        logger.info("SIGTERM received: draining before shutdown", drain_seconds=seconds)
        loop.call_soon_threadsafe(loop.call_later, seconds, pass_on, sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, server_handler)


class ClosingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, letting go of the listening socket when it stops them.

    The supervisor holds the socket its workers accept on. Once the workers have drained
    and closed theirs, the supervisor's copy alone would keep the port open: the kernel would
    complete handshakes that no worker accepts, and reset them at exit. Closed here, new
    connections are refused as soon as the last worker stops accepting.
    """

    def terminate_all(self) -> None:
        """Signal the workers (each drains, then stops), then close the supervisor's sockets."""
        super().terminate_all()
        for sock in self.sockets:
            sock.close()
