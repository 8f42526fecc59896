"""A TCP proxy between the API and Postgres that can cut, stall or refuse connections."""

import asyncio
import contextlib
from enum import Enum


class Fault(Enum):
    """What the proxy does to traffic."""

    NONE = "none"
    REFUSE = "refuse"  # new connections are closed at once
    STALL = "stall"  # connections stay open but no byte gets through
    HOLD_CLOSE = "hold close"  # bytes get through, but one side's close never reaches the other


class FaultProxy:
    """Forwards 127.0.0.1:<port> to the upstream Postgres until told to misbehave."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.fault = Fault.NONE
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._resume = asyncio.Event()
        self._resume.set()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Close everything."""
        self.cut()
        self._resume.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Close every open connection, as a network failure or a database restart would."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def set(self, fault: Fault) -> None:
        """Start misbehaving (or stop, with Fault.NONE)."""
        self.fault = fault
        if fault is Fault.STALL:
            self._resume.clear()
        else:
            self._resume.set()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self.fault is Fault.REFUSE:
            client.transport.abort()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            client.transport.abort()
            return
        self._writers.update((client, upstream))
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream), self._pipe(upstream_reader, client)
            )
        except asyncio.CancelledError:  # the proxy is shutting down
            client.transport.abort()
            upstream.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, RuntimeError):
            while data := await reader.read(65536):
                await self._resume.wait()
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        if self.fault is not Fault.HOLD_CLOSE:
            writer.transport.abort()
            self._writers.discard(writer)
