"""Graceful start and stop: wait for Postgres at startup, drain before stopping on SIGTERM."""

import asyncio
import ctypes
import os
import signal
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
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
    """While inside, SIGTERM first sets `draining` (readiness answers 503, every response
    closes its connection) and only `seconds` later passes the signal to the server, which
    then stops accepting connections and lets the requests in flight finish. Before passing
    it on, new handshakes are refused for a moment while the ones the kernel already
    completed are accepted and answered, so closing the listening socket resets nobody. A
    second SIGTERM passes at once.

    Does nothing outside the main thread, where signal handlers cannot be set, or when
    `seconds` is 0.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    server_handler = signal.getsignal(signal.SIGTERM)
    received: list[int] = []

    def pass_on(sig: int) -> None:
        if callable(server_handler):
            server_handler(sig, None)

    def stop_handshakes_then_pass_on(sig: int) -> None:
        try:
            stopped = refuse_new_handshakes()
        except Exception as error:  # the server must stop all the same
            logger.warning("could not refuse new handshakes", error=repr(error))
            pass_on(sig)
            return
        logger.info("draining done: accepting only handshakes already made", sockets=stopped)
        loop.call_later(_SETTLE_SECONDS, pass_on, sig)

    def begin_draining(sig: int) -> None:
        draining.set()
        logger.info("SIGTERM received: draining before shutdown", drain_seconds=seconds)
        loop.call_later(seconds, stop_handshakes_then_pass_on, sig)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        # A signal handler interrupts the main thread anywhere, even inside a lock it holds
        # (the log writer's): nothing here may log, lock or block. The work runs on the loop.
        received.append(sig)
        loop.call_soon_threadsafe(begin_draining if len(received) == 1 else pass_on, sig)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, server_handler)


# Classic BPF that drops segments with SYN set and ACK clear (a new connection's first
# segment) and passes the rest. For a TCP socket the filter reads from the TCP header, whose
# flags are byte 13. Hand-written: no maintained package attaches socket filters.
_SYN_WITHOUT_ACK = 0x02
_DROP_NEW_HANDSHAKES = (
    (0x30, 0, 0, 13),  # ldb [13]
    (0x54, 0, 0, 0x12),  # and #SYN|ACK
    (0x15, 0, 1, _SYN_WITHOUT_ACK),  # jeq #SYN, drop, pass
    (0x06, 0, 0, 0),  # drop: ret #0
    (0x06, 0, 0, 0xFFFFFFFF),  # pass: ret #-1 (whole segment)
)
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
# Long enough for handshakes half-made when the filter went on to complete and be accepted.
_SETTLE_SECONDS = 0.3


def _listening_tcp_sockets() -> Iterator[socket.socket]:
    """This process's listening TCP sockets, each a duplicate the caller must close."""
    for name in os.listdir("/proc/self/fd"):
        try:
            duplicate = os.dup(int(name))
        except OSError:
            continue  # the directory's own descriptor, closed by now
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:
            os.close(duplicate)  # not a socket
            continue
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            tcp = (
                sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            )
        except OSError:
            listening, tcp = 0, False
        if listening and tcp:
            yield sock
        else:
            sock.close()


def refuse_new_handshakes() -> int:
    """Have the kernel drop new connections' SYNs on every socket this process listens on;
    how many sockets.

    Connections the kernel has completed wait in the listen backlog until accepted, and are
    reset if the last copy of the listening socket closes first. With no new ones coming,
    the server accepts and answers what is queued before it closes; clients whose SYN was
    dropped retry it, and are refused once the socket is gone.
    """
    instructions = b"".join(struct.pack("HBBI", *line) for line in _DROP_NEW_HANDSHAKES)
    program = ctypes.create_string_buffer(instructions)
    fprog = struct.pack("HL", len(_DROP_NEW_HANDSHAKES), ctypes.addressof(program))
    count = 0
    for sock in _listening_tcp_sockets():
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
            count += 1
    return count


class CloseWhenDraining:
    """While draining, every response says `Connection: close`, so no idle keep-alive
    connection is left for the shutdown to close under a client that is just sending on it.
    """

    def __init__(self, app: ASGIApp, draining: threading.Event) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.draining.is_set():
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


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
