"""A TCP proxy for tests that lose replies: it listens on 127.0.0.1 (a free port), forwards
every connection to an upstream server, and can be told to cut the connection that carries
the reply to a chosen request, after the request reached the server (so the server applied
it) and before any byte of the reply reaches the client (so the client never learns it did).

    async with TcpProxy.to(url) as proxy:
        cut = proxy.cut_next_reply(lambda request: b"jobDone" in request)
        ...                                     # a client of proxy.url makes the call
        await cut.wait()                        # the reply was dropped, the connection closed

It knows nothing of HTTP beyond this: on each connection, the bytes the client sends after
the last reply bytes are the request being answered (HTTP/1.1 without pipelining, as httpx
speaks it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

Match = Callable[[bytes], bool]
CHUNK = 65536


class _Connection:
    """One client connection and its upstream one."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.request = bytearray()
        """The bytes of the request being answered (sent since the last reply bytes)."""
        self.replying = False
        """Reply bytes went back since the last request bytes came in."""

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpProxy:
    """See the module docstring. `cuts` counts the replies dropped so far, `cut_requests`
    holds the requests whose replies were dropped."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream_host = host
        self.upstream_port = port
        self.cuts = 0
        self.cut_requests: list[bytes] = []
        self.connections = 0
        """Client connections accepted so far."""
        self._armed: tuple[Match, asyncio.Event] | None = None
        self._open: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def to(cls, url: str) -> AsyncIterator[TcpProxy]:
        """A proxy to the server of an http:// URL, running until the block ends."""
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        proxy = cls(parts.hostname, parts.port)
        await proxy.start()
        try:
            yield proxy
        finally:
            await proxy.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._open):
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def cut_next_reply(self, match: Match = lambda request: True) -> asyncio.Event:
        """Drop the reply to the next request for which `match(request bytes)` is true, on
        whichever connection: once the server starts answering it, both sides of that
        connection are closed and nothing of the answer is forwarded. The event is set then."""
        assert self._armed is None, "a cut is already armed"
        done = asyncio.Event()
        self._armed = (match, done)
        return done

    # --- forwarding ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        connection = _Connection(writer, up_writer)
        self._open.add(connection)
        pumps = [
            asyncio.create_task(self._requests(reader, connection)),
            asyncio.create_task(self._replies(up_reader, connection)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            self._open.discard(connection)
            connection.abort()

    async def _requests(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        """Client to upstream, remembering the request being made."""
        while chunk := await reader.read(CHUNK):
            if connection.replying:
                connection.request.clear()
                connection.replying = False
            connection.request += chunk
            connection.upstream.write(chunk)
            await connection.upstream.drain()

    async def _replies(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        """Upstream to client, dropping the reply a cut is armed for."""
        while chunk := await reader.read(CHUNK):
            if not connection.replying and self._armed is not None:
                match, done = self._armed
                if match(bytes(connection.request)):
                    self._armed = None
                    self.cuts += 1
                    self.cut_requests.append(bytes(connection.request))
                    connection.abort()
                    done.set()
                    return
            connection.replying = True
            connection.client.write(chunk)
            await connection.client.drain()
