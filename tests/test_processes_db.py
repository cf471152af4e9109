"""Several processes on one database, through pymongo's real driver: `jobcollection worker`
CLI processes and plain Python worker processes (tests/wire_workers.py, each with its own job
server) working one collection on the wire stand-in (tests/wire_server.py, a process of its
own), a `jobcollection serve` process with a remote worker, and worker processes SIGKILLed
mid-job.

What must hold: every job is completed exactly once, whichever process claimed it; job
servers in several processes coexist (delayed jobs are promoted, dependents released, once);
a job whose worker process died is retried after its lease runs out, by another process, and
completed once. A concurrency limit holds over every process (in all and per group), as the
stored documents show at every moment this process samples them, and a SIGKILLed process's
slot is freed when its lease runs out; a paused type is claimed by no process, local or
remote, while the jobs running go on, and every process claims it again after the resume;
the worker registry lists each process's queue with the jobs it holds, and forgets a
SIGKILLed one once its TTL runs out.

Nothing waits for time to pass: the tests wait for lines the processes print, for a process
to exit, or for a state of the stored documents, each bounded; the lease that runs out is
one second long, the registration three. The jobs' own work holds them a little (a short
sleep, or until the test creates a file: their `gate`), so that limits and pauses bind while
they run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from helpers import messages, stored
from jobcollection import ConcurrencyLimit, JobCollection, Leader
from jobcollection.remote import RemoteJobCollection, hash_token, new_token
from test_remote_processes import EXPIRED, Process, environment, jobcollection
from wire_server import running

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TESTS = Path(__file__).resolve().parent
ALL_DONE_TIMEOUT = 60.0
"""The longest a test waits for a set of jobs to be completed by the worker processes."""


@pytest.fixture(scope="module")
def wire_uri() -> Iterator[str]:
    """The wire stand-in, in a process of its own, for this module's tests."""
    with running() as uri:
        yield uri


@pytest.fixture
async def shared(wire_uri: str) -> AsyncIterator[tuple[str, JobCollection]]:
    """A fresh database on the stand-in (its name) and a JobCollection on it, through the
    real driver, without a job server: the worker processes run theirs."""
    name = f"procs_{uuid.uuid4().hex[:12]}"
    client: Any = AsyncMongoClient(wire_uri, tz_aware=False)
    jc = JobCollection.from_database(client[name], "queue")
    try:
        yield name, jc
    finally:
        await jc.close()
        await client.drop_database(name)
        await client.close()


def cli_worker(tmp_path: Path, uri: str, database: str, function: str, *options: str) -> Any:
    """`python -m jobcollection worker remote_workers:FUNCTION` on the database (FUNCTION
    may name its module: `wire_workers:held`)."""
    return jobcollection(
        tmp_path,
        "worker",
        function if ":" in function else f"remote_workers:{function}",
        *options,
        "--mongodb-uri",
        uri,
        "--database",
        database,
        "--poll-interval",
        "0.2",
    )


def script_worker(
    tmp_path: Path,
    uri: str,
    database: str,
    job_type: str,
    name: str,
    lease: float = 10.0,
    options: Sequence[str] = (),
) -> Any:
    """`python tests/wire_workers.py` (process_jobs and a job server, no CLI); `job_type`
    may be several types separated by commas, `options` wire_workers.py's options."""
    script = str(TESTS / "wire_workers.py")
    return _python(tmp_path, script, uri, database, job_type, name, str(lease), *options)


def _python(tmp_path: Path, *args: str) -> Any:
    """A `python ARGS` process with the same plumbing as `jobcollection(...)`."""

    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[Process]:
        stderr = tmp_path / f"stderr-{uuid.uuid4().hex[:6]}.txt"
        with stderr.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                env=environment(),
                cwd=tmp_path,
            )
            try:
                yield Process(process, stderr)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    return run()


def logged_at(doc: Mapping[str, Any], message: str) -> Any:
    """When a stored document's log recorded `message` (its first such entry)."""
    return next(entry["time"] for entry in doc["log"] if entry["message"] == message)


async def collect(processes: list[Process], prefixes: tuple[str, ...], count: int) -> list[str]:
    """Read every process's output until `count` lines starting with one of `prefixes` have
    been printed in all (bounded); those lines (every line is kept in `process.lines`)."""
    found: list[str] = []
    enough = asyncio.Event()

    async def read(process: Process) -> None:
        assert process.process.stdout is not None
        while raw := await process.process.stdout.readline():
            line = raw.decode().rstrip("\n")
            process.lines.append(line)
            if line.startswith(prefixes):
                found.append(line)
                if len(found) >= count:
                    enough.set()

    readers = [asyncio.create_task(read(p)) for p in processes]
    try:
        async with asyncio.timeout(ALL_DONE_TIMEOUT):
            await enough.wait()
    except TimeoutError:
        said = "\n".join(p.describe() for p in processes)
        raise AssertionError(f"{len(found)} of {count} {prefixes} lines\n{said}") from None
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return found


async def stop(process: Process, last_line: str) -> None:
    """SIGTERM, then the process says `last_line` and exits 0."""
    process.send_signal(signal.SIGTERM)
    await process.expect(last_line)
    assert await process.exited() == 0, process.describe()


async def test_cli_and_script_workers_complete_every_job_once(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    database, jc = shared
    async with (
        cli_worker(tmp_path, wire_uri, database, "echo", "--type", "echo") as cli_a,
        cli_worker(tmp_path, wire_uri, database, "echo", "--type", "echo") as cli_b,
        script_worker(tmp_path, wire_uri, database, "echo", "s1") as script_1,
        script_worker(tmp_path, wire_uri, database, "echo", "s2") as script_2,
    ):
        for process in (cli_a, cli_b):
            await process.expect("worker started")
        for process, name in ((script_1, "s1"), (script_2, "s2")):
            await process.expect(f"ready {name}")
        # Delayed jobs and their dependents need a job server (promotion) and completions
        # in other processes: only the worker processes run job servers. The delay keeps
        # the prerequisites pending while their dependents are saved.
        delayed = [jc.create_job("echo", {"n": n}).delay(1.0) for n in range(4)]
        ids = await jc.save_jobs(delayed)
        first = jc.create_job("echo", {"n": 4}).depends(delayed[:2])
        ids.append(await first.save())
        ids.append(await jc.create_job("echo", {"n": 5}).depends([delayed[2], first]).save())
        # Saved while the four processes poll: they race for every claim.
        ids += await jc.save_jobs([jc.create_job("echo", {"n": n}) for n in range(6, 30)])
        assert len(ids) == 30 and None not in ids
        processes = [cli_a, cli_b, script_1, script_2]
        lines = await collect(processes, ("echo done ", "done "), len(ids))
        await stop(cli_a, "worker stopped")
        await stop(cli_b, "worker stopped")
        await stop(script_1, "stopped s1")
        await stop(script_2, "stopped s2")

    by_id = collections.Counter(line.split()[-1] for line in lines)
    assert sorted(by_id) == sorted(map(str, ids))
    assert set(by_id.values()) == {1}, by_id  # no job reported done twice
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert doc["status"] == "completed", doc
        assert messages(doc).count("Job Running") == 1, messages(doc)
        assert messages(doc).count("Job Completed") == 1, messages(doc)
    # A dependent started only after each of its prerequisites was completed, as the stored
    # logs' times show (the processes' printed lines are no order: another process may claim
    # and finish the dependent between a completion and the line that reports it).
    for dependent, needs in ((ids[4], ids[:2]), (ids[5], [ids[2], ids[4]])):
        started = logged_at(await stored(jc, dependent), "Job Running")
        for need in needs:
            assert logged_at(await stored(jc, need), "Job Completed") <= started


async def test_a_worker_process_killed_mid_job_has_its_job_retried_once_elsewhere(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """SIGKILL of a CLI worker holding a job with a 1 s lease: the job servers (this
    process's, passing every 0.1 s, and the second worker's) fail it once the lease runs
    out, it is retried, and another worker process completes it; the other jobs are
    completed once each, by that worker."""
    database, jc = shared
    jc.promote(0.1)
    await jc.start_job_server()
    held = await jc.create_job("slow", {"n": 0}).retry(3, wait=0).save()
    async with cli_worker(
        tmp_path, wire_uri, database, "hang", "--type", "slow", "--work-timeout", "1"
    ) as doomed:
        started = await doomed.expect("hang started")
        assert started == f"hang started {held}"
        later = await jc.save_jobs([jc.create_job("slow", {"n": n}) for n in range(1, 4)])
        doomed.process.send_signal(signal.SIGKILL)
        assert await doomed.exited() == -signal.SIGKILL
    async with cli_worker(tmp_path, wire_uri, database, "echo", "--type", "slow") as rescuer:
        await rescuer.expect("worker started")
        lines = await collect([rescuer], ("echo done ",), 4)
        await stop(rescuer, "worker stopped")

    assert sorted(line.split()[-1] for line in lines) == sorted(map(str, [held, *later]))
    doc = await stored(jc, held)
    assert doc["status"] == "completed", doc
    assert doc["retried"] == 2  # counts the runs (v1.x): the killed one and the rescue
    log = messages(doc)
    assert log.count("Job Running") == 2, log  # the killed attempt, then the rescuer's
    assert sum(EXPIRED in m for m in log) == 1, log
    assert log.count("Job Completed") == 1, log
    assert "hang worker started" in log and "echo worker saw {'n': 0}" in log
    for job_id in later:
        assert messages(await stored(jc, job_id)).count("Job Completed") == 1


async def leader_other_than(jc: JobCollection, pid: int | None) -> Leader:
    """The job server's leader once it is a process other than `pid` (bounded: the lease of
    these tests is one second, so a change takes at most a second and a third)."""
    async with asyncio.timeout(ALL_DONE_TIMEOUT):
        while True:
            leader = await jc.job_server_leader()
            if leader is not None and leader.pid != pid:
                return leader
            await asyncio.sleep(0.05)


async def test_a_killed_leader_is_replaced_by_a_process_standing_by(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """Two worker processes, each with a job server (1 s lease): one leads, the other stands
    by. SIGKILL of the leader: the other takes the lease over once it runs out, under the next
    epoch, and its passes run (a delayed job saved then is promoted and completed)."""
    database, jc = shared
    first = script_worker(tmp_path, wire_uri, database, "t", "first", lease=1.0)
    second = script_worker(tmp_path, wire_uri, database, "t", "second", lease=1.0)
    async with first as one, second as two:
        await one.expect("ready first")
        await two.expect("ready second")
        leader = await leader_other_than(jc, None)
        by_pid = {one.process.pid: one, two.process.pid: two}
        assert set(by_pid) == {one.process.pid, two.process.pid} and leader.pid in by_pid
        doomed = by_pid.pop(leader.pid)
        [survivor] = by_pid.values()
        doomed.process.send_signal(signal.SIGKILL)
        assert await doomed.exited() == -signal.SIGKILL
        successor = await leader_other_than(jc, leader.pid)
        assert successor.pid == survivor.process.pid and successor.epoch == leader.epoch + 1
        job_id = await jc.create_job("t").delay(0.3).save()
        [line] = await collect([survivor], ("done ",), 1)
        assert line.split()[-1] == str(job_id)
        assert messages(await stored(jc, job_id)).count("Job Completed") == 1


# --- concurrency limits --------------------------------------------------------------------------

HOLD_S = 0.2
"""How long a job of the limit tests works (its data's `hold`): long enough for the slots to
be full while the others wait, short enough for forty jobs to pass quickly."""


def value_at(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a stored document (None where it is missing)."""
    value: Any = doc
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


class Sampler:
    """Reads the stored running jobs of a type as often as it can (each read is one command,
    answered as of one moment by the stand-in, which answers one command at a time) until
    stopped: the most seen at once in all, and per value of `group` (a dotted field path).
    `holding`: count only the jobs that hold a slot (rules/concurrency.py: a lease that has
    not run out, by this process's clock moved `skew` on, or none)."""

    def __init__(
        self,
        jc: JobCollection,
        job_type: str,
        group: str | None = None,
        holding: bool = False,
        skew: timedelta = timedelta(0),
    ) -> None:
        self.peak = 0
        self.peaks: collections.Counter[Any] = collections.Counter()
        self.samples = 0
        self._jc = jc
        self._type = job_type
        self._group = group
        self._holding = holding
        self._skew = skew
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        projection = {"_id": 1} if self._group is None else {self._group: 1}
        while not self._stop.is_set():
            query: dict[str, Any] = {"type": self._type, "status": "running"}
            if self._holding:
                after = self._jc.clock.now() + self._skew
                query["$or"] = [
                    {"expiresAfter": {"$gt": after}},
                    {"expiresAfter": {"$exists": False}},
                ]
            docs = await self._jc.collection.find(query, projection).to_list()
            self.samples += 1
            self.peak = max(self.peak, len(docs))
            if self._group is not None:
                groups = collections.Counter(value_at(d, self._group) for d in docs)
                for value, count in groups.items():
                    self.peaks[value] = max(self.peaks[value], count)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sampler]:
        """Sample while the block runs."""
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._stop.set()
            async with asyncio.timeout(ALL_DONE_TIMEOUT):
                await self._task

    def describe(self) -> str:
        return f"peak {self.peak}, per group {dict(self.peaks)}, {self.samples} samples"


async def start_scripts(
    stack: contextlib.AsyncExitStack,
    tmp_path: Path,
    uri: str,
    database: str,
    job_types: str,
    names: Sequence[str],
    options: Sequence[str] = (),
) -> list[Process]:
    """Script workers named `names`, entered into `stack`, once each said it is ready."""
    processes = [
        await stack.enter_async_context(
            script_worker(tmp_path, uri, database, job_types, name, options=options)
        )
        for name in names
    ]
    for process, name in zip(processes, names, strict=True):
        await process.expect(f"ready {name}")
    return processes


async def stop_scripts(processes: Sequence[Process], names: Sequence[str]) -> None:
    for process, name in zip(processes, names, strict=True):
        await stop(process, f"stopped {name}")


async def assert_completed_once(jc: JobCollection, ids: Sequence[Any]) -> None:
    """Every job completed, having run once, without failing."""
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert doc["status"] == "completed", doc
        assert messages(doc).count("Job Running") == 1, messages(doc)
        assert messages(doc).count("Job Completed") == 1, messages(doc)
        assert not doc.get("failures"), doc


def done_ids(lines: Sequence[str]) -> collections.Counter[str]:
    """The job ids of "done NAME ID" lines, counted."""
    return collections.Counter(line.split()[-1] for line in lines)


async def test_a_concurrency_limit_holds_over_three_worker_processes(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """Three processes of concurrency 10 under ConcurrencyLimit(5): the stored documents,
    read again and again while they work, never show more than five jobs of the type
    running, and do show five (the limit binds); every job is completed once."""
    database, jc = shared
    await jc.set_concurrency_limit("limited", ConcurrencyLimit(5))
    names = ["a", "b", "c"]
    async with contextlib.AsyncExitStack() as stack:
        processes = await start_scripts(
            stack, tmp_path, wire_uri, database, "limited", names, ["--concurrency", "10"]
        )
        async with Sampler(jc, "limited").running() as sampler:
            jobs = [jc.create_job("limited", {"n": n, "hold": HOLD_S}) for n in range(40)]
            ids = await jc.save_jobs(jobs)
            lines = await collect(processes, ("done ",), len(ids))
        await stop_scripts(processes, names)

    assert sampler.peak == 5, sampler.describe()
    assert done_ids(lines) == collections.Counter(map(str, ids))  # each once
    await assert_completed_once(jc, ids)


async def test_a_limit_per_group_holds_for_each_group_over_three_processes(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """ConcurrencyLimit(2, group_by="data.customer") with three customers' jobs and three
    processes of concurrency 10: at no moment are more than two jobs of one customer
    running, every customer's jobs do run two at a time, and every job completes once."""
    database, jc = shared
    await jc.set_concurrency_limit("grouped", ConcurrencyLimit(2, group_by="data.customer"))
    names = ["a", "b", "c"]
    customers = ["acme", "globex", "initech"]
    async with contextlib.AsyncExitStack() as stack:
        processes = await start_scripts(
            stack, tmp_path, wire_uri, database, "grouped", names, ["--concurrency", "10"]
        )
        async with Sampler(jc, "grouped", group="data.customer").running() as sampler:
            jobs = [
                jc.create_job("grouped", {"customer": customer, "n": n, "hold": HOLD_S})
                for n in range(10)
                for customer in customers
            ]
            ids = await jc.save_jobs(jobs)
            lines = await collect(processes, ("done ",), len(ids))
        await stop_scripts(processes, names)

    assert sampler.peaks == dict.fromkeys(customers, 2), sampler.describe()
    assert sampler.peak <= 2 * len(customers), sampler.describe()
    assert done_ids(lines) == collections.Counter(map(str, ids))
    await assert_completed_once(jc, ids)


SKEW = timedelta(seconds=0.5)
"""How far apart two processes' readings of the server's time may be (each process measures
it, ServerClock, to within half a round trip: long ones on a loaded machine): the sampler
of the killed-holder test counts a lease as held only if it runs past its own reading by
this, so that a slot another process took a moment after the lease ran out, by its
reading, is not counted twice. Jobs claimed beside a held slot would hold leases of a minute
(the CLI's default): this leaves them counted."""


async def test_a_killed_holders_slot_is_freed_when_its_lease_runs_out(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """Limit 1: a CLI worker holds the only slot (a lease of 1 s, renewed while it lives)
    and is SIGKILLed while another worker process, started before, waits for the slot. The
    slot is taken again only once the lease has run out (no moment shows two jobs holding
    slots), and the rescuer completes every job, the killed one once it is retried."""
    database, jc = shared
    jc.promote(0.1)
    await jc.start_job_server()  # fails the killed job once its lease runs out
    await jc.set_concurrency_limit("solo", ConcurrencyLimit(1))
    held = await jc.create_job("solo", {"hold": HOLD_S}).retry(3, wait=0).save()
    async with cli_worker(
        tmp_path, wire_uri, database, "hang", "--type", "solo", "--work-timeout", "1"
    ) as doomed:
        assert await doomed.expect("hang started") == f"hang started {held}"
        later = await jc.save_jobs([jc.create_job("solo", {"hold": HOLD_S}) for _ in range(3)])
        sampler = Sampler(jc, "solo", holding=True, skew=SKEW)
        async with (
            sampler.running(),
            cli_worker(
                tmp_path,
                wire_uri,
                database,
                "wire_workers:held",
                "--type",
                "solo",
                "--concurrency",
                "3",
            ) as rescuer,
        ):
            await rescuer.expect("worker started")
            doomed.process.send_signal(signal.SIGKILL)
            assert await doomed.exited() == -signal.SIGKILL
            lines = await collect([rescuer], ("worked ",), 4)
            await stop(rescuer, "worker stopped")

    assert sampler.peak == 1, sampler.describe()
    assert sorted(line.split()[-1] for line in lines) == sorted(map(str, [held, *later]))
    doc = await stored(jc, held)
    assert doc["status"] == "completed", doc
    log = messages(doc)
    assert log.count("Job Running") == 2, log  # the killed attempt, then the rescuer's
    assert sum(EXPIRED in m for m in log) == 1, log
    assert log.count("Job Completed") == 1, log
    await assert_completed_once(jc, later)


# --- cluster-wide pause --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path, uri: str, database: str
) -> AsyncIterator[tuple[Process, str, str, str]]:
    """`jobcollection serve` on the database (long polls of at most a second: jobs saved by
    another process wake nobody on the stand-in, which has no change streams): the process,
    its URL, an admin's token and a worker's."""
    admin, worker = new_token(), new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"admin-user {hash_token(admin)} admin\nworker-user {hash_token(worker)} worker\n"
    )
    tokens.chmod(0o600)
    async with jobcollection(
        tmp_path,
        "serve",
        *("--port", "0", "--tokens", str(tokens), "--log-level", "warning", "--max-wait", "1"),
        *("--mongodb-uri", uri, "--database", database),
    ) as server:
        url = (await server.expect("jobcollection serving on ")).rsplit(" ", 1)[1]
        yield server, url, admin, worker


def gated(jc: JobCollection, job_type: str, gate: Path, count: int) -> list[Any]:
    """`count` jobs whose work ends once the file `gate` exists."""
    return [jc.create_job(job_type, {"gate": str(gate), "n": n}) for n in range(count)]


async def started(processes: Sequence[Process], count: int) -> dict[int, list[str]]:
    """Wait for `count` "started" lines in all (bounded): the ids of the jobs each process
    started meanwhile, by pid."""
    before = [len(p.lines) for p in processes]
    await collect(list(processes), ("started ",), count)
    return {
        p.process.pid: [line.split()[-1] for line in p.lines[n:] if line.startswith("started ")]
        for p, n in zip(processes, before, strict=True)
    }


def claimed(by_process: Mapping[int, Sequence[str]]) -> list[str]:
    """The job ids `started` answered, sorted."""
    return sorted(job_id for ids in by_process.values() for job_id in ids)


async def until_stored(jc: JobCollection, query: dict[str, Any], count: int) -> None:
    """Wait (bounded) until `count` stored jobs match `query`."""
    try:
        async with asyncio.timeout(ALL_DONE_TIMEOUT):
            while True:
                if await jc.collection.count_documents(query) >= count:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        found = await jc.collection.count_documents(query)
        raise AssertionError(f"{found} of {count} jobs match {query}") from None


async def test_a_paused_type_is_claimed_by_no_process_until_resumed(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """Three worker processes (2 slots each) and a remote worker (1 slot, through a
    `jobcollection serve` process) work types p and q. With every slot full of p jobs, p is
    paused (through the served API) and more p jobs are saved; once the three processes
    said they know of the pause, the running jobs are let finish: they complete, untouched.
    Then q jobs fill every slot again while the older p jobs stay ready: every process
    claimed, and none took p. After the resume, the p jobs fill every slot: every process
    claims p again; and every job completes once."""
    database, jc = shared
    names = ["a", "b", "c"]
    capacity = {"script": 2, "remote": 1}
    gates = {name: tmp_path / f"gate-{name}" for name in ("first", "paused", "other")}
    async with contextlib.AsyncExitStack() as stack:
        scripts = await start_scripts(
            stack, tmp_path, wire_uri, database, "p,q", names, ["--watch-pause"]
        )
        server, url, admin_token, worker_token = await stack.enter_async_context(
            served(tmp_path, wire_uri, database)
        )
        remote = await stack.enter_async_context(
            jobcollection(
                tmp_path,
                "worker",
                "wire_workers:held",
                *("--type", "p", "--type", "q", "--url", url, "--poll-interval", "0.2"),
                token=worker_token,
            )
        )
        await remote.expect("worker started")
        admin = await stack.enter_async_context(RemoteJobCollection(url, token=admin_token))
        everyone = [*scripts, remote]
        slots = {p.process.pid: capacity["script"] for p in scripts}
        slots[remote.process.pid] = capacity["remote"]
        total = sum(slots.values())

        # Every slot full of p jobs: each process claims p.
        first = await jc.save_jobs(gated(jc, "p", gates["first"], total))
        by_process = await started(everyone, total)
        assert {pid: len(ids) for pid, ids in by_process.items()} == slots
        assert claimed(by_process) == sorted(map(str, first))

        # Paused through the served API; the processes know of it before a slot frees.
        assert (await admin.pause_type("p")).types == ("p",)
        for process, name in zip(scripts, names, strict=True):
            await process.expect(f"paused {name}")
        waiting = await jc.save_jobs(gated(jc, "p", gates["paused"], total))
        gates["first"].touch()  # the running jobs go on, and complete
        await until_stored(jc, {"_id": {"$in": first}, "status": "completed"}, len(first))

        # Other work fills every slot: every process claims, none takes the older p jobs.
        other = await jc.save_jobs(gated(jc, "q", gates["other"], total))
        by_process = await started(everyone, total)
        assert {pid: len(ids) for pid, ids in by_process.items()} == slots
        assert claimed(by_process) == sorted(map(str, other))
        for job_id in waiting:
            assert (await stored(jc, job_id))["status"] == "ready"

        # Resumed: the p jobs fill every slot as the q jobs end.
        assert (await jc.resume_type("p")).types == ()
        gates["other"].touch()
        by_process = await started(everyone, total)
        assert {pid: len(ids) for pid, ids in by_process.items()} == slots
        assert claimed(by_process) == sorted(map(str, waiting))
        gates["paused"].touch()
        everything = [*first, *waiting, *other]
        await until_stored(jc, {"_id": {"$in": everything}, "status": "completed"}, total * 3)

        await stop_scripts(scripts, names)
        await stop(remote, "worker stopped")
        await admin.close()  # before its server stops (the stack closes it again: no-op)
        server.send_signal(signal.SIGTERM)
        assert await server.exited() == 0, server.describe()
    await assert_completed_once(jc, everything)


# --- the worker registry -------------------------------------------------------------------------

WORKER_TTL = 3.0
"""The registrations' TTL in the registry test (`--worker-ttl`): renewed every second."""
SLACK_S = 10.0
"""What a loaded machine may add to the TTL before the registry is seen without a killed
process (far less than the default TTL, 30 s, which this test must not be passing by)."""


async def registered(
    jc: JobCollection, wanted: Any, timeout: float = ALL_DONE_TIMEOUT
) -> dict[int, Any]:
    """Wait (bounded) until the registry's live queues, by pid, satisfy `wanted`; them."""
    seen: dict[int, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                seen = {w.pid: w for w in await jc.workers()}
                if wanted(seen):
                    return seen
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"the registry lists {seen}") from None


async def test_worker_processes_are_listed_with_their_jobs_and_a_killed_one_expires(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """Two worker processes (`worker_ttl` 3 s) each holding two jobs: `jc.workers()` lists
    both, with their host, pid, type, concurrency, TTL and the jobs they hold. One is
    SIGKILLed: it is gone once its registration was not renewed for 3 s, while the other
    stays listed; the other leaves the registry at its shutdown."""
    database, jc = shared
    names = ["a", "b"]
    gate = tmp_path / "gate"
    options = ["--worker-ttl", str(WORKER_TTL)]
    async with contextlib.AsyncExitStack() as stack:
        doomed, survivor = await start_scripts(
            stack, tmp_path, wire_uri, database, "r", names, options
        )
        await jc.save_jobs(gated(jc, "r", gate, 4))
        holding = {pid: set(ids) for pid, ids in (await started([doomed, survivor], 4)).items()}
        assert sorted(map(len, holding.values())) == [2, 2]

        seen = await registered(
            jc, lambda by_pid: {pid: set(map(str, w.held)) for pid, w in by_pid.items()} == holding
        )
        for worker in seen.values():
            assert (worker.host, worker.types, worker.concurrency) == (
                socket.gethostname(),
                ("r",),
                2,
            )
            assert (worker.kind, worker.holding, worker.ttl_ms) == ("local", 2, 3000)
        last_known = seen[doomed.process.pid]

        doomed.process.send_signal(signal.SIGKILL)
        assert await doomed.exited() == -signal.SIGKILL
        after = await registered(
            jc, lambda by_pid: doomed.process.pid not in by_pid, WORKER_TTL + SLACK_S
        )
        assert list(after) == [survivor.process.pid]
        # Listed until its TTL ran out since its last renewal, and no longer.
        assert last_known.last_seen is not None
        assert jc.clock.now() >= last_known.last_seen + timedelta(seconds=WORKER_TTL)

        gate.touch()  # the survivor's jobs end; it stops, and leaves
        await stop(survivor, "stopped b")
    assert await jc.workers() == []
