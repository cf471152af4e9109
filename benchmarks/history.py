"""The per-minute history's cost (local/history.py) beside the naive way of keeping it.

- history (today): workers report as always; the elected job server's pass counts the jobs
  finished since the last pass (one indexed read of the finished jobs, one bulk of upserts
  into the minute and hour buckets, and the mark's take and update).
- naive: every report also adds its job to its minute's bucket with one `$inc` upsert (what a
  reporter-side history would do: one more command per job on the hot path).

Both run `--jobs` jobs of `--types` types through save, claim and done on the in-memory
backend (its times are not figures to quote, only the commands and ratios: see README.md), and
print the commands per job on the hot path, and the commands and time of the history's part.

    python benchmarks/history.py              # 2,000 jobs, ~20 s
    python benchmarks/history.py --jobs 200   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from jobcollection import JobCollection, ManualClock
from jobcollection.rules import history as rules
from jobcollection.testing import memory_database

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def run(jobs: int, types: int, naive: bool) -> tuple[float, int, float, int]:
    """(hot-path commands per job, history commands, history seconds, jobs counted)."""
    clock = ManualClock(START)
    database = memory_database(f"history_{'naive' if naive else 'pass'}")
    jc = JobCollection.from_database(database, "bench", clock=clock)
    await jc.start_job_server()
    await jc._core.server._stop_loop()
    server = jc._core.server
    history = server.history
    assert history is not None
    await server.run_pass()  # the mark: counting starts
    buckets = database["bench.naive_history"]
    extra_commands = 0
    extra_s = 0.0
    before = jc.commands
    for n in range(jobs):
        job_type = f"t{n % types}"
        await jc.create_job(job_type).save()
        [job] = await jc.get_work(job_type)
        clock.advance(0.05)
        await job.done()
        if naive:
            started = time.perf_counter()
            minute = rules.floor(clock.now(), "m")
            await buckets.update_one(
                {"_id": f"{job_type}|{minute:%H:%M}"},
                {"$inc": {"completed": 1, f"run.{rules.bucket_of(50)}": 1}},
                upsert=True,
            )
            extra_s += time.perf_counter() - started
            extra_commands += 1
    hot = (jc.commands - before + extra_commands) / jobs
    if naive:
        await jc.close()
        return hot, extra_commands, extra_s, jobs
    clock.advance(rules.LAG.total_seconds() + 1)
    store = await history._history()
    assert store is not None
    jobs_before, history_before = jc.commands, store.commands
    started = time.perf_counter()
    counted = await history.record()  # one pass: up to MAX_RANGES ranges of MAX_SPAN
    took = time.perf_counter() - started
    commands = jc.commands - jobs_before + store.commands - history_before
    await jc.close()
    return hot, commands, took, counted


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--types", type=int, default=4)
    args = parser.parse_args()
    print(f"{args.jobs:,} jobs of {args.types} types, save + claim + done, in memory")
    print(f"{'':<10} {'hot path cmd/job':>17} {'history cmds':>13} {'history ms':>11}")
    print(f"{'':<10} {'(history incl.)':>17} {'(all jobs)':>13} {'(all jobs)':>11}")
    for naive in (False, True):
        hot, commands, took, counted = await run(args.jobs, args.types, naive)
        assert counted == args.jobs, (counted, args.jobs)
        name = "naive" if naive else "history"
        print(f"{name:<10} {hot:>17.2f} {commands:>13,} {took * 1000:>11.1f}")
    span = timedelta(seconds=args.jobs * 0.05)
    print(f"(the jobs finish over {span}; one pass counts them, {rules.MAX_SPAN} a range)")


if __name__ == "__main__":
    asyncio.run(main())
