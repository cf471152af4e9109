"""A real remote API for tests: uvicorn serving a JobCollection on 127.0.0.1 (a free port), in
the test's event loop, and clients of it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from jobcollection import JobCollection
from jobcollection.api.jobs import JobsAPI
from jobcollection.remote import RemoteJobCollection, TokenAuth, create_app

TOKENS = {"admin-token": "tester", "worker-token": "worker-1", "creator-token": "creator-1"}
"""Bearer tokens of the test servers, and the users they stand for."""


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 at a free port until the block ends; its
    URL. The server is started and stopped step by step rather than with `serve()`, whose
    main loop and shutdown each wait 100 ms: tests stop it once their clients are closed."""
    # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on the accepted connections (with
    # proto 0 it does not, and every response waits 40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        if server.server_state.tasks:
            await asyncio.wait(server.server_state.tasks, timeout=5)
        await server.lifespan.shutdown()
        for listener in server.servers:
            await listener.wait_closed()
        sock.close()


def serve_jc(jc: JobCollection, **options: Any) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve jc's remote API (the TOKENS users; "tester" is granted admin)."""
    jc.allow(admin=["tester"])
    return serving(create_app(jc, auth=TokenAuth.from_tokens(TOKENS), **options))


class ThroughRemote(JobsAPI):
    """A JobCollection whose Python API (jobs, queues, bulk actions, scheduling) goes through
    its own remote API over loopback, and whose server side (the job server, the method
    layer, events, the collection) is the JobCollection's own: the remote side of the suites
    parametrised over both."""

    def __init__(self, local: JobCollection, remote: RemoteJobCollection) -> None:
        self.local = local
        self.remote = remote

    @property
    def service(self) -> Any:
        return self.remote.service

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)
