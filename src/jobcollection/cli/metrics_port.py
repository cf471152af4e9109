"""`--metrics-port`: the Prometheus endpoint that `serve`, and `worker` on a database, open
beside their work (`serving_metrics`).

It answers without a token, so it has a port of its own rather than a route on the API's
(which only ever answers authenticated calls), on loopback unless `--metrics-host` says
otherwise. A worker on `--url` has no collection of its own to count: the server it works
through counts its jobs (REMOTE_METRICS says so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .errors import EXIT_UNAVAILABLE, CommandFailed, Refused, say

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI

METRICS_REFRESH_S = 15.0
"""How often `--metrics-port` reads the queue depths (JobMetrics.refresh: one aggregation)."""


@contextlib.asynccontextmanager
async def serving_metrics(args: argparse.Namespace, jc: JobsAPI) -> AsyncIterator[None]:
    """With `--metrics-port`, while the block runs: the collection's Prometheus metrics
    (metrics.JobMetrics, and the process's own) at `/metrics` on prometheus_client's HTTP
    server, on `--metrics-host` (loopback unless given); the queue depths read every
    METRICS_REFRESH_S seconds. It answers without a token, so it listens on a port of its own
    (the API's port only ever answers authenticated calls): scrape it from the machine, or
    give `--metrics-host` where a private network reaches it. Its labels hold job types and
    statuses only, never ids, users or data."""
    port: int | None = getattr(args, "metrics_port", None)
    if port is None:
        yield
        return
    from prometheus_client import start_http_server

    from ..api.collection import JobCollection
    from ..metrics import JobMetrics

    if not isinstance(jc, JobCollection):  # refused before connecting: see worker.work
        raise Refused(REMOTE_METRICS)
    metrics = JobMetrics(jc)
    try:
        server, thread = start_http_server(port, addr=args.metrics_host)
    except OSError as exc:
        raise CommandFailed(
            f"--metrics-port: cannot listen on {args.metrics_host}:{port} "
            f"({exc.strerror or exc}); give another port, or 0 for any free one",
            EXIT_UNAVAILABLE,
        ) from exc
    host, bound = server.server_address[:2]
    say(f"metrics on http://{_url_host(str(host))}:{bound}/metrics")
    refresh = asyncio.create_task(metrics.run(METRICS_REFRESH_S))
    try:
        yield
    finally:
        refresh.cancel()
        await asyncio.gather(refresh, return_exceptions=True)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


REMOTE_METRICS = (
    "--metrics-port needs --mongodb-uri or --demo: the jobs of workers on --url are counted "
    "by the server they work through (`serve --metrics-port PORT`)"
)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
