"""The `jobcollection` command (also `python -m jobcollection`).

    jobcollection serve  [--mongodb-uri URI | --demo] [--tokens FILE] [--host H] [--port P] ...
                         [--metrics-port P [--metrics-host H]]
    jobcollection worker MODULE:FUNCTION --type T [--concurrency N] WHERE [--burst] [--grace S]
                         [--metrics-port P [--metrics-host H]]
    jobcollection worker MODULE:OBJECT --tasks [--type T] [--concurrency N] WHERE ...
    jobcollection token USER [ROLE ...]
    jobcollection ls [--type T ...] [--status S ...] [--user U] [--data PATH=VALUE ...] [--json]
    jobcollection show ID [--json]
    jobcollection retry|cancel|remove (ID ... | --type/--status/--user/--data ...) [--yes]
    jobcollection purge --completed-before MOMENT [--status S ...] [--yes]
    jobcollection stats [--json]
    jobcollection workflow ID [--json]
    jobcollection batch ID [--json]
    jobcollection pause|resume (TYPE ... | --all)
    jobcollection limit TYPE (MAX [--group-by PATH] | --remove)
    jobcollection limits [--json]
    jobcollection schedules [--json]
    jobcollection dashboard (--mongodb-uri URI | --demo) [--port P] [--read-only]

WHERE says where the jobs are, and nothing is assumed: `--url URL` (a `jobcollection serve`;
the token in `--token` or JOBCOLLECTION_TOKEN, and the command runs under the token's roles),
`--mongodb-uri URI` (a database; JOBCOLLECTION_MONGODB_URI when none of the three is given,
which keeps a password out of the process list), or `--demo` (an empty in-memory database,
private to the process: for trying the command out, said so on stderr). `serve` without a
URI serves an in-memory database, and says so on stderr.

`serve` runs the remote API (remote.create_app) with uvicorn, and the job server. Users and
their roles (admin, manager, creator, worker) come from the tokens file; without one it makes a
demo admin token and serves on loopback only; with `--ddp` it also serves Meteor's DDP at
`/websocket`, for job-collection's own node.js workers (meteor-job), logging in with the same
tokens. It also serves the web dashboard (jobcollection.web) at `/dashboard/`: a browser logs
in with a token; users the tokens file makes neither admin nor manager may only look.
`dashboard` serves the dashboard alone, on loopback, without tokens: whoever can reach it
there acts as its admin user (`--read-only`: may only look).
`worker` runs a queue of an async function, through a remote API (`--url`) or on a database;
on a database it runs the job server too (a JobCollection hands out work only while its job
server runs; the job servers of several processes on one collection coexist, every pass
being idempotent conditional updates). It logs one line per job started and one per outcome
(`--log-level`, `--log-format text|json`, on stderr). The first SIGTERM or Ctrl-C shuts it
down normally (running jobs finish, within `--grace` seconds if given, queued ones are handed
back), a second one at once (running jobs are failed and retried); `--burst` stops it once
no job is ready. `worker MODULE:OBJECT --tasks` runs typed tasks (tasks.py) instead, in one
queue, on the collection it opens: every task of the TaskRegistry OBJECT names
(`tasks = TaskRegistry()` and `@tasks.task(...)` in that module), or every task registered on
the job collection it names (`@jc.task(...)`), or a Task, or a list of Tasks; `--type` picks
among them.
`token` prints a new token and its line for the tokens file.
`--metrics-port` (`serve`, and `worker` on a database) serves Prometheus metrics
(metrics.JobMetrics) at `/metrics` on a port of its own, without a token, on 127.0.0.1 unless
`--metrics-host` says otherwise (see `metrics_port.serving_metrics`). Each command needs the extras
errors.EXTRAS_NEEDED lists (`jobcollection --help` shows them).

The operator commands (`ls`, `show`, `retry`, `cancel`, `remove`, `purge`, `stats`, `pause`,
`resume`, `limit`, `limits`, `schedules`, `workers`, `workflow`, `batch`) work on a database,
or through a remote API under the token's roles: `ls`, `stats`, `workflow`, `batch` and the
filters of `retry`/`cancel`/`remove`/`purge` call jobFind and jobStats (admin or manager),
`show` and the counting of changes getJob (admin or worker), the changes the manager's
methods (`limit` and `limits`: jobSetConcurrencyLimit and jobConcurrencyLimits; `schedules`:
jobSchedules); a manager's token changes jobs without counting them. `purge` removes what it
found in pages, each removal the conditional
update `remove` makes (a job restarted meanwhile is kept). Each is an async function of a
collection, the parsed arguments and a `Console` (where it writes, how it asks for a
confirmation), so it runs in-process on any collection:
`await operate(jc, parser().parse_args(["ls", "--demo"]), console)`.

A mistake (a wrong URL, a bad token, an unreachable server, a bad MODULE:FUNCTION, an invalid
MongoDB URI, a missing extra) is one line on stderr, `jobcollection COMMAND: what is wrong;
how to fix it`, and an exit code; `--debug` adds the traceback. `serve` and `dashboard` log
the library's records on stderr too, at their `--log-level`.

Exit codes:
    0  done
    1  the operation failed: no job matched, declined, a database error while working
    2  usage: a bad or missing option or argument, a bad MODULE:FUNCTION, an invalid URI
    3  cannot connect or not allowed: server or database unreachable, not a jobcollection
       remote API at that URL, a token refused or lacking the role, a port `serve` or
       `dashboard` cannot listen on (uvicorn's own message)
    4  a missing extra: `pip install "jobcollection[EXTRA]"`
    130 interrupted (Ctrl-C) before the command could stop by itself

Modules, from the bottom up: errors.py (exit codes, extras, `explain`: how a command ends),
logs.py (log lines on stderr), values.py (what the options' values mean), connect.py (where
the jobs are: `--url`, `--mongodb-uri`, `--demo`), metrics_port.py (`--metrics-port`),
serve.py (`serve`, `dashboard`, `token`), worker.py (`worker`), operating.py (what the
operator commands share: `Console`, `operate`), pausing.py (`pause`, `resume`), limits.py
(`limit`, `limits`), schedules.py (`schedules`), reading.py (`ls`, `show`, `stats`),
workflows.py (`workflow`, `batch`),
changing.py (`retry`, `cancel`,
`remove`, `purge`), arguments.py (`parser`), and here `main`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from collections.abc import Sequence

from .arguments import parser
from .connect import uri_from_environment
from .errors import EXIT_INTERRUPTED, explain, note, one_line
from .logs import logging_to_stderr
from .operating import Console, operate
from .serve import token

__all__ = ["Console", "main", "operate", "parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command: its exit code (see errors.EXIT_CODES). An error is one line on stderr
    (with its traceback too under `--debug`)."""
    args = parser().parse_args(argv)
    uri_from_environment(args)
    try:
        with contextlib.ExitStack() as stack:
            if args.command == "worker":
                stack.enter_context(logging_to_stderr(args.log_level, args.log_format))
            elif args.command in ("serve", "dashboard"):  # the job server's, the API's
                level = "debug" if args.log_level == "trace" else args.log_level
                stack.enter_context(logging_to_stderr(level, "text"))
            if args.command == "token":
                return token(args)
            code: int = asyncio.run(args.run(args))
            return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug or args.debug_first:
            traceback.print_exception(exc, file=sys.stderr)
        code, message = explain(exc, args.command)
        note(args.command, one_line(message))
        return code
