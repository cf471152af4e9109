"""The mistakes people make with the `jobcollection` command, each run as a process as users
run it: a command that says neither where its jobs are nor `--demo`, a wrong URL or URL path,
a bad or missing token, an unreachable server or database, a bad MODULE:FUNCTION, an invalid
MongoDB URI, a missing extra. Each must end the command with the documented exit code and one
line on stderr (`jobcollection COMMAND: what is wrong; how to fix it`), no traceback unless
`--debug` asks for one.

Nothing here waits for time to pass: an unreachable MongoDB is given a 200 ms server
selection timeout in its URI, and every process is bounded by PROCESS_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobcollection.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING_EXTRA,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Refused,
    explain,
    one_line,
)

TESTS = Path(__file__).resolve().parent
PROCESS_TIMEOUT = 30.0


@dataclass
class Ran:
    """What a `python -m jobcollection ...` process did."""

    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The one line on stderr (the assertion says what else there was)."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        assert "Traceback" not in self.err
        return lines[0]


def environment(token: str | None = None, mongodb_uri: str | None = None) -> dict[str, str]:
    """This environment, with the tests folder importable, and JOBCOLLECTION_TOKEN and
    JOBCOLLECTION_MONGODB_URI as given (unset otherwise)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    for name in ("JOBCOLLECTION_TOKEN", "JOBCOLLECTION_MONGODB_URI", "MONGODB_URI"):
        env.pop(name, None)
    if token is not None:
        env["JOBCOLLECTION_TOKEN"] = token
    if mongodb_uri is not None:
        env["JOBCOLLECTION_MONGODB_URI"] = mongodb_uri
    return env


COMMAND = (sys.executable, "-m", "jobcollection")


async def run_cli(
    *args: str,
    token: str | None = None,
    mongodb_uri: str | None = None,
    cwd: Path | None = None,
    program: tuple[str, ...] = COMMAND,
) -> Ran:
    """`python -m jobcollection ARGS` (or `PROGRAM ARGS`) to its end, with JOBCOLLECTION_TOKEN
    and JOBCOLLECTION_MONGODB_URI as given."""
    process = await asyncio.create_subprocess_exec(
        *program,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(token, mongodb_uri),
        cwd=cwd,
    )
    try:
        async with asyncio.timeout(PROCESS_TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"`jobcollection {' '.join(args)}` did not end") from None
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- where the jobs are ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["show", "6b0e00000000000000000000"],
        ["stats"],
        ["cancel", "6b0e00000000000000000000"],
        ["purge", "--completed-before", "7d"],
        ["limit", "mail", "3"],
        ["limits"],
        ["worker", "remote_workers:echo", "--type", "echo"],
        ["dashboard"],
    ],
)
async def test_a_command_that_says_not_where_the_jobs_are_is_refused(argv: list[str]) -> None:
    ran = await run_cli(*argv)
    assert ran.code == EXIT_USAGE
    line = ran.error_line()
    assert line.startswith(f"jobcollection {argv[0]}: say where the jobs are: ")
    assert "--mongodb-uri URI" in line and "--demo" in line
    assert ran.out == ""


async def test_demo_is_an_in_memory_database_and_says_so() -> None:
    ran = await run_cli("ls", "--demo")
    assert ran.code == EXIT_FAILED
    assert ran.err.splitlines() == [
        "jobcollection ls: --demo: an IN-MEMORY database, empty at start and private to this "
        "process; nothing is kept (--mongodb-uri URI or --url URL for real jobs)",
        "no jobs match",
    ]


async def test_the_places_are_exclusive() -> None:
    ran = await run_cli("ls", "--demo", "--mongodb-uri", "mongodb://127.0.0.1:1")
    assert ran.code == EXIT_USAGE
    assert "not allowed with argument" in ran.err and "Traceback" not in ran.err


# --- the remote API ------------------------------------------------------------------------------


async def test_url_without_a_token_is_refused() -> None:
    ran = await run_cli("ls", "--url", "http://127.0.0.1:8000")
    assert ran.code == EXIT_USAGE
    assert ran.error_line() == (
        "jobcollection ls: --url needs a token: --token TOKEN or JOBCOLLECTION_TOKEN (the "
        "server's admin makes one with `jobcollection token USER ROLE`)"
    )


async def test_a_url_that_is_not_http_is_refused() -> None:
    ran = await run_cli("show", "x", "--url", "127.0.0.1:8000", token="t")
    assert ran.code == EXIT_USAGE
    assert ran.error_line().startswith("jobcollection show: --url: '127.0.0.1:8000' is not an")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:notaport", "Invalid port: 'notaport'"),
        ("http://127.0.0.1:99999", "Port out of range 0-65535"),
    ],
)
async def test_a_url_with_a_bad_port_is_refused(url: str, problem: str) -> None:
    ran = await run_cli("ls", "--url", url, "--token", "t")
    assert ran.code == EXIT_USAGE
    assert ran.error_line() == (
        f"jobcollection ls: --url: {url!r} is not a usable URL ({problem}); give the address "
        "`jobcollection serve` prints (http://HOST:PORT)"
    )


@pytest.mark.parametrize(
    ("given", "name"), [("--token", "--token"), ("env", "JOBCOLLECTION_TOKEN")]
)
async def test_a_token_that_cannot_be_one_is_refused_before_connecting(
    given: str, name: str
) -> None:
    """Not printable ASCII: no `jobcollection token` made it, and no HTTP header carries it."""
    url = f"http://127.0.0.1:{closed_port()}"
    if given == "env":
        ran = await run_cli("stats", "--url", url, token="tök\n")
    else:
        ran = await run_cli("stats", "--url", url, "--token", "two words")
    assert ran.code == EXIT_USAGE
    assert ran.error_line() == (
        f"jobcollection stats: {name}: not a token (a token is printable ASCII without "
        "spaces, as `jobcollection token USER ROLE` prints it)"
    )


async def test_an_unreachable_server() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ran = await run_cli("show", "6b0e00000000000000000000", "--url", url, "--token", "t")
    assert ran.code == EXIT_UNAVAILABLE
    line = ran.error_line()
    assert line.startswith(f"jobcollection show: cannot reach {url} (ConnectError: ")
    assert line.endswith("is `jobcollection serve` running there?")


# --- MongoDB -------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["localhost:27017", "mongodb://host:notaport", "mongodb://"])
async def test_an_invalid_mongodb_uri(uri: str) -> None:
    ran = await run_cli("stats", "--mongodb-uri", uri)
    assert ran.code == EXIT_USAGE
    line = ran.error_line()
    assert line.startswith("jobcollection stats: --mongodb-uri: not a")
    assert line.endswith("e.g. mongodb://HOST:27017 or mongodb+srv://USER:PASSWORD@CLUSTER)") or (
        line.endswith("mongodb+srv://USER:PASSWORD@CLUSTER")
    )


async def test_the_uri_in_the_environment_is_named_in_its_errors() -> None:
    """JOBCOLLECTION_MONGODB_URI stands for --mongodb-uri, and the messages about it say so;
    --demo and --mongodb-uri each take the place of the environment's URI."""
    unreachable = f"mongodb://127.0.0.1:{closed_port()}/?serverSelectionTimeoutMS=200"
    invalid, refused, demo, given = await asyncio.gather(
        run_cli("stats", mongodb_uri="localhost:27017"),
        run_cli("ls", mongodb_uri=unreachable),
        run_cli("ls", "--demo", mongodb_uri="localhost:27017"),
        run_cli("stats", "--mongodb-uri", "nope", mongodb_uri=unreachable),
    )
    assert invalid.code == EXIT_USAGE
    assert invalid.error_line() == (
        "jobcollection stats: JOBCOLLECTION_MONGODB_URI: not a MongoDB connection string "
        "(e.g. mongodb://HOST:27017 or mongodb+srv://USER:PASSWORD@CLUSTER)"
    )
    assert refused.code == EXIT_UNAVAILABLE
    assert refused.error_line().endswith(
        "check the host and port in JOBCOLLECTION_MONGODB_URI and that the server runs"
    )
    assert demo.code == EXIT_FAILED  # no jobs in the empty demo database
    assert demo.err.splitlines()[-1] == "no jobs match"
    assert given.code == EXIT_USAGE
    assert given.error_line().startswith("jobcollection stats: --mongodb-uri: not a MongoDB")


async def test_an_unreachable_mongodb() -> None:
    uri = f"mongodb://127.0.0.1:{closed_port()}/?serverSelectionTimeoutMS=200"
    commands = (["ls"], ["limit", "mail", "3"], ["worker", "remote_workers:echo", "--type", "echo"])
    for argv in commands:
        ran = await run_cli(*argv, "--mongodb-uri", uri)
        assert ran.code == EXIT_UNAVAILABLE
        line = ran.error_line()
        assert line.startswith(f"jobcollection {argv[0]}: cannot reach MongoDB (127.0.0.1:")
        assert line.endswith("check the host and port in --mongodb-uri and that the server runs")


# --- the worker's function -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "remote_workers",
            "'remote_workers' must be MODULE:FUNCTION (e.g. myapp.tasks:send_email)",
        ),
        (
            "no_such_module:work",
            "no_such_module:work: no module 'no_such_module'; run from the folder that holds "
            "it, or add that folder to PYTHONPATH",
        ),
        ("remote_workers:nothing", "remote_workers:nothing: remote_workers has no 'nothing'"),
        ("remote_workers:TESTS", "remote_workers:TESTS: remote_workers has no 'TESTS'"),
        ("broken_module:work", "broken_module:work: importing broken_module raised ZeroDivision"),
    ],
)
async def test_a_bad_module_function(spec: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "broken_module.py").write_text("1 / 0\n")
    ran = await run_cli("worker", spec, "--type", "t", "--demo", cwd=tmp_path)
    assert ran.code == EXIT_USAGE
    *demo_note, line = ran.err.splitlines()
    assert "Traceback" not in ran.err and len(demo_note) <= 1
    assert line.startswith(f"jobcollection worker: {message}"), line


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--concurrency", "0"], "--concurrency: must be >= 1, got 0"),
        (["--type", ""], "--type: must be a non-empty string"),
        (
            ["--executor", "process"],
            '--executor: "process" runs a plain function in child processes; this worker is '
            "async (it runs on the event loop)",
        ),
        (
            ["--max-tasks-per-child", "3"],
            '--max-tasks-per-child: applies to executor="process" only',
        ),
        (
            ["--max-memory-per-child", "lots"],
            "error: argument --max-memory-per-child: 'lots' is not a size in bytes (1 or more: "
            "512M, 2G)",
        ),
    ],
)
async def test_a_bad_worker_option_is_named(option: list[str], message: str) -> None:
    ran = await run_cli("worker", "remote_workers:echo", "--type", "echo", *option, "--demo")
    assert ran.code == EXIT_USAGE
    assert ran.err.splitlines()[-1] == f"jobcollection worker: {message}"
    assert "Traceback" not in ran.err


async def test_tasks_that_are_not_tasks() -> None:
    ran = await run_cli("worker", "remote_workers:echo", "--tasks", "--demo")
    assert ran.code == EXIT_USAGE
    assert ran.error_line() == (
        "jobcollection worker: remote_workers:echo is not a TaskRegistry, a job collection, a "
        "Task or a list of Tasks"
    )


async def test_token_refuses_unknown_roles_and_users_the_tokens_file_cannot_hold() -> None:
    ran = await run_cli("token", "someone", "boss")
    assert ran.code == EXIT_USAGE
    assert ran.error_line().startswith("jobcollection token: unknown roles ['boss']")
    ran = await run_cli("token", "two words", "admin")
    assert ran.code == EXIT_USAGE
    assert ran.error_line().startswith("jobcollection token: USER 'two words' cannot be")


# --- missing extras ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "argv", "extra"),
    [
        ("uvicorn", ["dashboard", "--demo"], "web"),
        ("starlette", ["dashboard", "--demo"], "web"),
        ("starlette", ["serve", "--port", "0"], "server"),
        ("uvicorn", ["serve", "--port", "0"], "server"),
        ("starlette", ["token", "alice", "admin"], "server"),
        ("httpx", ["ls", "--url", "http://127.0.0.1:1", "--token", "t"], "client"),
        (
            "httpx",
            [
                "worker",
                "asyncio:sleep",
                "--type",
                "t",
                "--url",
                "http://127.0.0.1:1",
                "--token",
                "t",
            ],
            "client",
        ),
        ("mongomock_motor", ["stats", "--demo"], "memory"),
        ("mongomock_motor", ["serve", "--port", "0"], "memory"),
        (
            "prometheus_client",
            ["worker", "asyncio:sleep", "--type", "t", "--demo", "--metrics-port", "0"],
            "metrics",
        ),
    ],
)
async def test_a_missing_extra_says_which_to_install(
    missing: str, argv: list[str], extra: str
) -> None:
    """The package is made unimportable in the process (None in sys.modules, as for a package
    that is not installed) before the command's main() runs."""
    script = (
        f"import sys; sys.modules[{missing!r}] = None; from jobcollection.cli import main; "
        f"sys.exit(main({argv!r}))"
    )
    ran = await run_cli(program=(sys.executable, "-c", script))
    assert ran.code == EXIT_MISSING_EXTRA
    assert ran.err.splitlines()[-1] == (
        f"jobcollection {argv[0]}: needs {missing}, which is not installed: "
        f'pip install "jobcollection[{extra}]"'
    )
    assert "Traceback" not in ran.err


# --- --debug and --help --------------------------------------------------------------------------


async def test_debug_shows_the_traceback_then_the_line() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    for argv in (["--debug", "show", "x"], ["show", "x", "--debug"]):
        ran = await run_cli(*argv, "--url", url, "--token", "t")
        assert ran.code == EXIT_UNAVAILABLE
        assert ran.err.startswith("Traceback (most recent call last):")
        assert ran.err.splitlines()[-1].startswith(f"jobcollection show: cannot reach {url}")


async def test_help_lists_the_exit_codes() -> None:
    for argv in (["--help"], ["worker", "--help"], ["ls", "--help"]):
        ran = await run_cli(*argv)
        assert ran.code == 0
        assert "exit codes:" in ran.out
        if argv != ["--help"]:
            assert "(default: $JOBCOLLECTION_MONGODB_URI when" in " ".join(ran.out.split())
        for code in ("0    done", "2    usage", "3    cannot connect", "4    a missing extra"):
            assert code in ran.out


async def test_the_console_script_is_the_same_command() -> None:
    script = Path(sys.executable).with_name("jobcollection")
    if not script.exists():
        pytest.skip("the console script is not installed next to this Python")
    ran = await run_cli("ls", program=(str(script),))
    assert ran.code == EXIT_USAGE
    assert ran.error_line().startswith("jobcollection ls: say where the jobs are: ")


async def test_ctrl_c_while_connecting_exits_130(tmp_path: Path) -> None:
    """An operator command interrupted before it is done: 130, no traceback. The command
    waits on a server that accepts the connection and never answers; it is interrupted once
    it has connected."""
    connected = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connected.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobcollection",
            "show",
            "x",
            "--url",
            f"http://127.0.0.1:{port}",
            "--token",
            "t",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment(),
        )
        async with asyncio.timeout(PROCESS_TIMEOUT):
            await connected.wait()
            process.send_signal(signal.SIGINT)
            _, err = await process.communicate()
        for writer in writers:
            writer.close()
    assert process.returncode == EXIT_INTERRUPTED, err.decode()
    assert b"Traceback" not in err


# --- the rules, in this process ------------------------------------------------------------------


def test_explain_gives_each_error_its_code_and_line() -> None:
    from jobcollection.model.errors import DatabaseError, InvalidArgument, PermissionDenied

    missing = ModuleNotFoundError("No module named 'uvicorn.config'", name="uvicorn.config")
    assert explain(missing) == (
        EXIT_MISSING_EXTRA,
        'needs uvicorn, which is not installed: pip install "jobcollection[server]"',
    )
    assert explain(missing, "dashboard") == (
        EXIT_MISSING_EXTRA,
        'needs uvicorn, which is not installed: pip install "jobcollection[web]"',
    )
    assert explain(ModuleNotFoundError("No module named 'x'", name="x")) == (
        EXIT_FAILED,
        "cannot import x: No module named 'x'",
    )
    assert explain(PermissionDenied("Method not authorized: jobRemove")) == (
        EXIT_UNAVAILABLE,
        "not allowed: the token's user may not call jobRemove (a token with the role admin or "
        "manager may)",
    )
    assert explain(InvalidArgument("limit", "must be >= 1")) == (
        EXIT_USAGE,
        "limit: must be >= 1",
    )
    assert explain(DatabaseError("lost")) == (EXIT_FAILED, "database error: lost")
    assert explain(Refused("--x: no")) == (EXIT_USAGE, "--x: no")
    assert explain(RuntimeError("odd")) == (
        EXIT_FAILED,
        "RuntimeError: odd (--debug shows the traceback)",
    )
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 1000)) == 500
