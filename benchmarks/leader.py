"""The elected job server's cost beside N independent job servers (issue 22), through
pymongo's real driver against the wire stand-in (or a real server with --uri).

N JobCollections on one collection stand for N processes. Each round, every one of them
does what its job server's loop does once a pass interval:

- elected (today): `run_pass()`: each renews or tries the lease, and only the leader runs
  the pass's steps; and between two passes each checks the lease `--checks` more times, as
  its loop does every third of the lease (default settings: a 15 s pass interval and a 10 s
  lease, so 3.5 checks more per pass);
- independent (before the election): every one runs the pass's steps (`run_pass(held=True)`).

The collection holds `--jobs` jobs, a tenth of them waiting on time and coming due as the
rounds go (the promotion has work), the rest ready. It prints, per round, the commands by
name and collection, the client CPU and the server's (a real mongod reports its own).

    python benchmarks/leader.py                 # 10 processes, 20 rounds, ~30 s
    python benchmarks/leader.py --processes 3   # fewer
    python benchmarks/leader.py --uri mongodb://localhost:27017
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from jobcollection import JobCollection, ManualClock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from wire_server import running


class ByCollection(monitoring.CommandListener):
    """Commands started, by `name collection`."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        where = str(target).rsplit(".", 1)[-1] if isinstance(target, str) else "-"
        self.seen[f"{event.command_name} {where}"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Counted when started."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Counted when started."""


async def server_cpu_s(client: Any) -> float | None:
    info = (await client.admin.command("serverStatus")).get("extra_info") or {}
    if "user_time_us" not in info:
        return None
    return (int(info["user_time_us"]) + int(info.get("system_time_us", 0))) / 1e6


async def rounds(
    client: Any, listener: ByCollection, args: argparse.Namespace, elected: bool
) -> None:
    processes, jobs, count = args.processes, args.jobs, args.rounds
    database = client[f"leader_bench_{'elected' if elected else 'independent'}"]
    await client.drop_database(database.name)
    clock = ManualClock()
    collections = [JobCollection.from_database(database, clock=clock) for _ in range(processes)]
    for jc in collections:  # started, without their loops: the rounds drive every pass
        await jc.start_job_server()
        await jc._core.server._stop_loop()
    first = collections[0]
    await first.save_jobs(
        [first.create_job("t", {"i": i}).delay(i % 10) for i in range(jobs // 10)]
        + [first.create_job("t", {"i": i}) for i in range(jobs - jobs // 10)]
    )
    before, server = Counter(listener.seen), await server_cpu_s(client)
    cpu, wall = time.process_time(), time.perf_counter()
    checks = 0.0
    for _ in range(count):
        clock.advance(1)  # a pass interval; the lease (10 s) is renewed at every round
        for jc in collections:
            await jc._core.server.run_pass(held=not elected)
        checks += args.checks if elected else 0
        while checks >= 1:
            checks -= 1
            for jc in collections:
                await jc._core.server.leadership.hold()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    seen = Counter(listener.seen)
    seen.subtract(before)
    after = await server_cpu_s(client)
    label = "elected" if elected else "independent"
    total = sum(seen.values())
    print(f"{label}: {processes} processes, {count} rounds")
    print(f"  commands per round: {total / count:.1f}")
    for name, n in sorted(seen.items()):
        if n:
            print(f"    {name}: {n / count:.1f}")
    print(f"  client CPU per round: {cpu / count * 1e3:.1f} ms (wall {wall / count * 1e3:.1f} ms)")
    if server is not None and after is not None:
        print(f"  server CPU per round: {(after - server) / count * 1e3:.1f} ms")
    for jc in collections:
        await jc.close()
    await client.drop_database(database.name)


async def main(args: argparse.Namespace) -> None:
    listener = ByCollection()

    async def run(uri: str) -> None:
        client: Any = AsyncMongoClient(uri, event_listeners=[listener], tz_aware=False)
        try:
            for elected in (False, True):
                await rounds(client, listener, args, elected)
        finally:
            await client.close()

    if args.uri:
        await run(args.uri)
    else:
        with running() as uri:
            await run(uri)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--checks", type=float, default=3.5, help="lease checks per process between passes"
    )
    parser.add_argument("--uri", help="a MongoDB server (default: the wire stand-in)")
    asyncio.run(main(parser.parse_args()))
