"""The command line: `parser()` builds the `jobcollection` command's argparse parser, every
subcommand with its options, its `--debug` and the exit codes in its help.

Each subcommand's parser sets `run`, the function `main` runs with the parsed arguments (an
operator command's also `operation`, the Operation `run_operator` runs). The option groups
several subcommands share are helpers here: where the jobs are (`--url`, `--mongodb-uri`,
`--demo`), the job filters, `--metrics-port`. This module is the top of the package: it
imports every command, and no command imports it. (Not parser.py: `jobcollection.cli.parser`
is the function, and one name should not be a module too.)
"""

from __future__ import annotations

import argparse
from typing import Any

from ..api.queue.options import EXECUTORS
from ..model import constants as c
from ..model.constants import PERMISSION_LEVELS
from .changing import ACTIONS, FINISHED, act, purge
from .connect import MONGODB_URI_ENV, TOKEN_ENV
from .errors import EXIT_CODES, EXTRAS_NEEDED
from .limits import limit, limits
from .logs import LOG_LEVELS, SERVER_LOG_LEVELS
from .operating import Operation, run_operator
from .pausing import pause, resume
from .reading import ls, show, stats, workers
from .schedules import schedules
from .serve import dashboard, serve, token
from .values import byte_size, data_item, max_running, moment, page_size, seconds
from .worker import work
from .workflows import batch, workflow

DESCRIPTION = "The `jobcollection` command (also `python -m jobcollection`)."
"""The first line of `--help` (and of the package's docstring)."""


def _database_options(
    parser: argparse.ArgumentParser, *, remote: bool = False, demo: str = "--demo"
) -> None:
    """Where the jobs are: `--url` (with `remote`), `--mongodb-uri` or `--demo`, one of them;
    the database and root names."""
    where = parser.add_argument_group("where the jobs are (one of)")
    exclusive = where.add_mutually_exclusive_group()
    if remote:
        exclusive.add_argument(
            "--url", help="a `jobcollection serve`: the address it prints (http://HOST:PORT)"
        )
    exclusive.add_argument(
        "--mongodb-uri",
        metavar="URI",
        help=f"a MongoDB connection string (default: ${MONGODB_URI_ENV} when "
        f"{'neither --url nor --demo is' if remote else '--demo is not'} given; safer: a "
        "password on the command line is visible in the process list)",
    )
    exclusive.add_argument(
        "--demo",
        action="store_true",
        help=f"an empty in-memory database, private to this process ({demo})",
    )
    if remote:
        where.add_argument(
            "--token", help=f"the bearer token for --url (default: ${TOKEN_ENV}, safer)"
        )
    where.add_argument("--database", default="jobcollection", help="database name")
    where.add_argument("--root", default="queue", help="the collection is ROOT.jobs")


def _command(commands: Any, name: str, help: str, **options: Any) -> argparse.ArgumentParser:
    """A subcommand's parser, with `--debug` and the exit codes in its help."""
    p: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **options,
    )
    p.add_argument("--debug", action="store_true", help="print the traceback of an error")
    return p


def parser() -> argparse.ArgumentParser:
    """The `jobcollection` command's parser: `parser().parse_args(argv)` gives the arguments
    `main` runs, and an operator command's the arguments `operate` takes."""
    top = argparse.ArgumentParser(
        prog="jobcollection",
        description=DESCRIPTION,
        epilog=f"{EXTRAS_NEEDED}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument(
        "--debug", dest="debug_first", action="store_true", help="print the traceback of an error"
    )
    commands = top.add_subparsers(dest="command", required=True)

    s = _command(commands, "serve", help="run the remote API and the job server")
    _database_options(s, demo="the default without --mongodb-uri")
    s.add_argument("--tokens", help="tokens file: lines `<user id> <sha256 of token> [roles]`")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0: any free port")
    s.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    s.add_argument("--max-wait", type=float, default=30.0, help="longest long poll, seconds")
    s.add_argument(
        "--no-job-server",
        action="store_true",
        help="hand out no work (getWork answers nothing): a server for creating and managing "
        "jobs only",
    )
    s.add_argument(
        "--ddp", action="store_true", help="also serve DDP at /websocket (meteor-job workers)"
    )
    s.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a host name /dashboard/ is reached by (repeatable; `.example.com`: the domain "
        "and its subdomains); given, the dashboard refuses requests for other names (403)",
    )
    s.add_argument("--log-level", default="info", choices=SERVER_LOG_LEVELS, help="default: info")
    _metrics_options(s)
    s.set_defaults(run=serve)

    w = _command(
        commands,
        "worker",
        help="run a queue of a function (async, or plain: in threads or processes), or of tasks",
    )
    w.add_argument(
        "function",
        help="MODULE:FUNCTION, a function of a job (async, or plain); with --tasks "
        "MODULE:OBJECT, a TaskRegistry or a job collection whose tasks run (all of them), "
        "a Task or a list of Tasks",
    )
    w.add_argument(
        "--type", action="append", help="job type (repeatable; with --tasks: only these)"
    )
    w.add_argument("--tasks", action="store_true", help="run typed tasks (see function)")
    _database_options(w, remote=True, demo="for trying a worker out")
    w.add_argument("--concurrency", type=int, default=1)
    w.add_argument("--payload", type=int, default=1)
    w.add_argument("--prefetch", type=int, default=0)
    w.add_argument("--poll-interval", type=float, default=5.0)
    w.add_argument("--work-timeout", type=float, default=None, help="lease, seconds")
    w.add_argument("--timeout", type=float, default=None, help="seconds a job may run")
    w.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=None,
        help="where a plain (not async) function runs: thread (the default: a pool of "
        "--concurrency threads) or process (as many child processes, killed on a timeout or a "
        "cancel; the function is handed a JobView)",
    )
    w.add_argument(
        "--max-tasks-per-child",
        type=int,
        default=None,
        metavar="N",
        help="--executor process: replace a child after N jobs",
    )
    w.add_argument(
        "--max-memory-per-child",
        type=byte_size,
        default=None,
        metavar="SIZE",
        help="--executor process: replace a child whose resident memory after a job is over "
        "SIZE (bytes, or with K, M or G: 512M)",
    )
    w.add_argument("--burst", action="store_true", help="stop once no job is ready")
    w.add_argument(
        "--grace",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="at the first SIGTERM/Ctrl-C, running jobs have this long to finish before they "
        "are failed (and retried); default: as long as they take",
    )
    w.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="default: info")
    w.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines on stderr as text, or one JSON object each",
    )
    _metrics_options(w)
    w.set_defaults(run=work)

    t = _command(commands, "token", help="make a token and its tokens-file line")
    t.add_argument("user")
    t.add_argument("roles", nargs="*", help=f"any of {', '.join(PERMISSION_LEVELS)}")
    t.set_defaults(run=token)

    d = _command(commands, "dashboard", help="serve the web dashboard alone, on loopback")
    _database_options(d, remote=True, demo="for trying the dashboard out")
    d.add_argument("--host", default="127.0.0.1", help="a loopback address")
    d.add_argument("--port", type=int, default=8000, help="0: any free port")
    d.add_argument("--read-only", action="store_true", help="no actions, only looking")
    d.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a host name besides localhost and loopback addresses that the dashboard is "
        "reached by (repeatable; `.example.com`: the domain and its subdomains); requests "
        "for any other name are refused (403), against DNS rebinding",
    )
    d.add_argument("--log-level", default="info", choices=SERVER_LOG_LEVELS, help="default: info")
    d.set_defaults(run=dashboard)

    _operator_commands(commands)
    return top


def _filter_options(parser: argparse.ArgumentParser, what: str = "jobs") -> None:
    parser.add_argument("--type", action="append", help=f"{what} of this type (repeatable)")
    parser.add_argument(
        "--status",
        action="append",
        choices=c.JOB_STATUSES,
        help=f"{what} in this status (repeatable)",
    )
    parser.add_argument("--user", help=f'{what} for this user id (JSON when it parses: 7, "7")')
    parser.add_argument(
        "--data",
        action="append",
        type=data_item,
        metavar="PATH=VALUE",
        help=f"{what} whose data holds VALUE (JSON when it parses) at PATH (repeatable)",
    )


def _operator_commands(commands: Any) -> None:
    def add(name: str, operation: Operation, help: str) -> argparse.ArgumentParser:
        p = _command(commands, name, help=help, description=help)
        _database_options(p, remote=True)
        p.set_defaults(run=run_operator, operation=operation)
        return p

    ls_ = add("ls", ls, "list jobs, newest first (the next page's cursor goes to stderr)")
    _filter_options(ls_)
    ls_.add_argument(
        "--created-before",
        type=moment,
        metavar="MOMENT",
        help="jobs created before an ISO date/datetime (UTC unless given) or a duration ago "
        "(30m, 12h, 7d)",
    )
    ls_.add_argument("--limit", type=page_size, default=50, help="jobs per page (1-1000)")
    ls_.add_argument("--after", metavar="CURSOR", help="the page after this cursor")
    ls_.add_argument("--json", action="store_true", help="one job document per line")

    sh = add("show", show, "one job, with its log and failures")
    sh.add_argument("id", help="the job's id (24 hex digits: the ObjectId they spell)")
    sh.add_argument("--json", action="store_true", help="the job document as JSON")

    for name, (verb, statuses, _) in ACTIONS.items():
        a = add(
            name,
            act,
            f"{verb.lower()} jobs by id, or every job matching a filter (by default the "
            f"{'/'.join(statuses)} ones) after a confirmation",
        )
        a.add_argument("ids", nargs="*", metavar="ID", help="job ids")
        _filter_options(a)
        a.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    pu = add("purge", purge, "remove finished jobs last updated before a moment")
    pu.add_argument(
        "--completed-before",
        type=moment,
        required=True,
        metavar="MOMENT",
        help="an ISO date/datetime (UTC unless given) or a duration ago (30m, 12h, 7d)",
    )
    pu.add_argument(
        "--status",
        action="append",
        choices=FINISHED,
        help="only jobs in this status (repeatable; default: all three)",
    )
    pu.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    for name, operation, verb in (("pause", pause, "stop"), ("resume", resume, "restart")):
        pr = add(
            name,
            operation,
            f"{verb} the claims of job types on every process (running jobs finish)",
        )
        pr.add_argument("types", nargs="*", metavar="TYPE", help="job types")
        pr.add_argument("--all", action="store_true", help="every type")

    li = add(
        "limit",
        limit,
        "at most MAX jobs of a type running at once on every process (per group with "
        "--group-by), or --remove the type's limit",
    )
    li.add_argument("type", metavar="TYPE", help="the job type")
    li.add_argument(
        "max",
        nargs="?",
        type=max_running,
        metavar="MAX",
        help="the most jobs of TYPE running at once (1 to 1,000,000)",
    )
    li.add_argument(
        "--group-by",
        metavar="PATH",
        help="at most MAX per value of this field: `user` (the job's user) or `data.PATH`",
    )
    li.add_argument("--remove", action="store_true", help="remove the type's limit")

    ls_limits = add("limits", limits, "every type's concurrency limit")
    ls_limits.add_argument("--json", action="store_true", help="one JSON object, by type")

    sc = add("schedules", schedules, "every schedule object: its timing, next run and last run")
    sc.add_argument("--json", action="store_true", help="one JSON object per schedule")

    wo = add("workers", workers, "the live queues of every process, and the jobs they hold")
    wo.add_argument("--json", action="store_true", help="one registration per line")

    st = add("stats", stats, "jobs per type and status, and the oldest ready job per type")
    st.add_argument("--json", action="store_true", help="one JSON object")

    wf = add(
        "workflow",
        workflow,
        "a workflow: its jobs counted per status, how far it is, and each job with its type, "
        "status and what it waits on",
    )
    wf.add_argument("id", metavar="ID", help="the workflow's id (Workflow.id, 24 hex digits)")
    wf.add_argument("--json", action="store_true", help="one JSON object: the counts and every job")

    ba = add("batch", batch, "a batch: how far it is, and its jobs counted per status")
    ba.add_argument("id", metavar="ID", help="the batch's id (the flow's id, 24 hex digits)")
    ba.add_argument("--json", action="store_true", help="one JSON object")


def _metrics_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("metrics (the metrics extra)")
    group.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, without a token, on a "
        "port of their own (0: any free port)",
    )
    group.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="where --metrics-port listens (default: 127.0.0.1; metrics hold job types and "
        "counts, no ids, users or data)",
    )
