"""The SIGTERM handler itself: it must return at once wherever it interrupts the main thread,
even inside the log writer's lock."""

import subprocess
import sys
import tempfile
import textwrap

SIGTERMS = 10

# Writes log lines on the loop's thread as fast as it can while another thread sends SIGTERM,
# so the signal nearly always lands inside the log writer's lock.
WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading, time
    import structlog
    from branchloans.observability.logs import configure_logging
    from branchloans.shutdown import drain_on_sigterm
    from tests.support import make_settings

    configure_logging(make_settings("postgresql+asyncpg://nobody@127.0.0.1/none"))
    logger = structlog.get_logger("writer")

    async def one_sigterm() -> None:
        passed_on = []
        signal.signal(signal.SIGTERM, lambda sig, frame: passed_on.append(sig))
        with drain_on_sigterm(threading.Event(), 0.05):
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
            while not passed_on:
                logger.info("a line", padding="x" * 200)
                await asyncio.sleep(0)

    for _ in range(int(sys.argv[1])):
        asyncio.run(one_sigterm())
    print("every SIGTERM passed on", file=sys.stderr)
    """
)


def test_sigterm_during_log_writes_is_passed_on_every_time() -> None:
    with tempfile.TemporaryFile() as lines:
        try:
            finished = subprocess.run(
                [sys.executable, "-c", WRITER, str(SIGTERMS)],
                stdout=lines,
                stderr=subprocess.PIPE,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError("the process hung in its SIGTERM handler") from None
    assert finished.returncode == 0, finished.stderr.decode()
    assert b"every SIGTERM passed on" in finished.stderr


# In a process of its own: the filter goes on every socket the process listens on.
HANDSHAKES = textwrap.dedent(
    """
    import socket
    from branchloans.shutdown import refuse_new_handshakes

    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    queued = socket.create_connection(address)
    assert refuse_new_handshakes() == 1
    try:
        socket.create_connection(address, timeout=0.5)
        print("a new connection was made")
    except TimeoutError:
        print("a new SYN was dropped")
    accepted, _ = listener.accept()
    queued.sendall(b"ping")
    print("the queued one was accepted:", accepted.recv(4).decode())
    """
)


def test_refusing_new_handshakes_keeps_the_queued_connections() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", HANDSHAKES], capture_output=True, timeout=30, check=True
    )
    assert finished.stdout.decode().splitlines() == [
        "a new SYN was dropped",
        "the queued one was accepted: ping",
    ]
