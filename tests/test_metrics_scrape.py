"""`/metrics` as Prometheus scrapes it: a real `jobcollection serve --metrics-port 0` process
and a real `jobcollection worker ... --metrics-port 0` process, each scraped over HTTP once
jobs went through it, the body checked by Prometheus's own `promtool check metrics`.

promtool comes with Debian's `prometheus` package (.ci/run installs it); without it these
tests are skipped, unless JOBCOLLECTION_REQUIRE_PROMTOOL is set (as .ci/run sets it). Nothing
waits for time to pass: the tests wait for lines the processes print, and a scrape that has
not seen a report yet is repeated, bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from jobcollection import ConcurrencyLimit, JobCollection
from jobcollection.remote import RemoteJobCollection
from test_remote_processes import LINE_TIMEOUT, Process, jobcollection
from wire_server import running

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("JOBCOLLECTION_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is not on PATH (apt-get install prometheus)")
        pytest.skip("promtool is not on PATH (apt-get install prometheus)")
    return found


def check_metrics(promtool: str, body: str) -> None:
    """`promtool check metrics` accepts the body: exit 0, and no lint problem."""
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n--- body:\n{body}"
    assert not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


async def scrape_until(url: str, pattern: str) -> str:
    """The body of GET `url` once it matches `pattern` (regex): a report counted after the
    worker's reply reached the test is seen at a following scrape."""
    async with httpx.AsyncClient() as client:
        async with asyncio.timeout(LINE_TIMEOUT):
            while True:
                response = await client.get(url)
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                if re.search(pattern, response.text, re.MULTILINE):
                    return response.text
                await asyncio.sleep(0.05)


def address(line: str) -> str:
    found = re.search(r"(https?://\S+)", line)
    assert found, line
    return found[1]


async def stopped(process: Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await process.exited() == 0, process.describe()


async def test_serve_metrics_port_serves_what_promtool_accepts(
    tmp_path: Path, promtool: str
) -> None:
    async with jobcollection(
        tmp_path, "serve", "--port", "0", "--metrics-port", "0", "--log-level", "warning"
    ) as server:
        token = (await server.expect("demo admin token")).split()[-1]
        metrics = address(await server.expect("metrics on http://127.0.0.1:"))
        assert metrics.endswith("/metrics")
        url = address(await server.expect("jobcollection serving on"))
        async with RemoteJobCollection(url, token=token) as remote:
            await remote.create_job("mail", {"to": "a"}).save()
            await remote.create_job("mail", {"to": "b"}).save()
            first, second = await remote.get_work("mail", max_jobs=2)
            assert await first.done({"sent": True}) is True
            assert await second.fail("smtp down", fatal=True) is True
        body = await scrape_until(
            metrics, r'^jobcollection_jobs_finished_total\{outcome="failed",type="mail"\} 1\.0$'
        )
        assert 'jobcollection_jobs_enqueued_total{type="mail"} 2.0' in body
        assert 'jobcollection_jobs_finished_total{outcome="completed",type="mail"} 1.0' in body
        assert 'jobcollection_job_duration_seconds_count{type="mail"} 2.0' in body
        assert "# TYPE jobcollection_queue_depth gauge" in body
        assert "process_cpu_seconds_total" in body  # the process's own, as usual
        check_metrics(promtool, body)
        async with httpx.AsyncClient() as client:  # the API's port has no /metrics
            assert (await client.get(f"{url}/metrics")).status_code == 404
        await stopped(server)


@pytest.fixture(scope="module")
def wire_uri() -> Iterator[str]:
    with running() as uri:
        yield uri


@pytest.fixture
async def database(wire_uri: str) -> AsyncIterator[tuple[str, JobCollection]]:
    """A fresh database on the wire stand-in and a JobCollection on it (no job server)."""
    name = f"metrics_{uuid.uuid4().hex[:12]}"
    client: Any = AsyncMongoClient(wire_uri, tz_aware=True)
    jc = JobCollection.from_database(client[name], "queue")
    try:
        yield name, jc
    finally:
        await jc.close()
        await client.drop_database(name)
        await client.close()


async def test_worker_metrics_port_serves_what_promtool_accepts(
    tmp_path: Path, promtool: str, wire_uri: str, database: tuple[str, JobCollection]
) -> None:
    name, jc = database
    ids = await jc.save_jobs([jc.create_job("echo", {"n": n}) for n in range(3)])
    await jc.set_concurrency_limit("echo", ConcurrencyLimit(5))  # read at the first refresh
    async with jobcollection(
        tmp_path,
        "worker",
        "remote_workers:echo",
        "--type",
        "echo",
        "--mongodb-uri",
        wire_uri,
        "--database",
        name,
        "--poll-interval",
        "0.2",
        "--metrics-port",
        "0",
    ) as worker:
        metrics = address(await worker.expect("metrics on http://127.0.0.1:"))
        for _ in ids:
            await worker.expect("echo done")
        body = await scrape_until(
            metrics, r'^jobcollection_jobs_finished_total\{outcome="completed",type="echo"\} 3\.0$'
        )
        assert 'jobcollection_job_wait_seconds_count{type="echo"} 3.0' in body
        assert 'jobcollection_concurrency_limit{type="echo"} 5.0' in body
        check_metrics(promtool, body)
        await stopped(worker)


async def test_a_taken_metrics_port_is_one_line_and_exit_3(tmp_path: Path) -> None:
    async with jobcollection(
        tmp_path, "serve", "--port", "0", "--metrics-port", "0", "--log-level", "warning"
    ) as first:
        await first.expect("demo admin token")
        port = address(await first.expect("metrics on ")).split(":")[2].split("/")[0]
        async with jobcollection(
            tmp_path, "worker", "remote_workers:echo", "--type", "t", "--demo",
            "--metrics-port", port,
        ) as second:  # fmt: skip
            assert await second.exited() == 3, second.describe()
            last = second.stderr.read_text().strip().splitlines()[-1]
            assert last.startswith("jobcollection worker: --metrics-port: cannot listen on "), last
            assert "Traceback" not in second.stderr.read_text()
        await stopped(first)


async def test_a_remote_worker_is_told_where_its_metrics_are(tmp_path: Path) -> None:
    async with jobcollection(
        tmp_path, "worker", "remote_workers:echo", "--type", "t", "--url", "http://127.0.0.1:9",
        "--metrics-port", "0", token="x",
    ) as worker:  # fmt: skip
        assert await worker.exited() == 2, worker.describe()
        message = worker.stderr.read_text().strip()
        assert message == (
            "jobcollection worker: --metrics-port needs --mongodb-uri or --demo: the jobs of "
            "workers on --url are counted by the server they work through (`serve "
            "--metrics-port PORT`)"
        )
