"""A pytest plugin that runs the suite through pymongo's real driver against the wire stand-in
(tests/wire_server.py): it starts the server in a process of its own before the suite's
conftest is read, and points MONGODB_URI at it, so every test that takes the `database`
fixture talks to it over TCP through `AsyncMongoClient`.

    python -m pytest -p tests.wire_tier -p no:cacheprovider     # from the project's root
    PYTHONPATH=tests python -m pytest -p wire_tier ...          # the same

`WIRE_SERVER_OPTIONS` passes options to the server (`--replica-set rs0`). What the server
could not answer (a command it does not know, mongomock failing, a duplicate key no index
explains) is listed at the end of the run, and fails it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loaded before the conftest

from wire_server import running

PROBED = frozenset({"configureFailPoint"})
"""Commands tests send to find out whether the server has them (tests/test_replica_set.py
skips its fail-point cases without it): not a failure of the run."""
_STACK = contextlib.ExitStack()
_LOG: Path | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: Any, args: Any) -> None:
    global _LOG
    if os.environ.get("MONGODB_URI"):
        raise pytest.UsageError("wire_tier: MONGODB_URI is set already")
    handle, name = tempfile.mkstemp(prefix="wire_server.", suffix=".log")
    os.close(handle)
    _LOG = Path(name)
    log = _STACK.enter_context(_LOG.open("w"))
    options = os.environ.get("WIRE_SERVER_OPTIONS", "").split()
    os.environ["MONGODB_URI"] = _STACK.enter_context(running(*options, stderr=log))


def pytest_report_header(config: pytest.Config) -> str:
    return f"wire stand-in: MONGODB_URI={os.environ.get('MONGODB_URI')} (tests/wire_server.py)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _STACK.close()
    os.environ.pop("MONGODB_URI", None)
    if _LOG is None:
        return
    problems = [
        line
        for line in _LOG.read_text().splitlines()
        if line.startswith("wire_server:") and not any(f"'{name}'" in line for name in PROBED)
    ]
    _LOG.unlink(missing_ok=True)
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("wire stand-in: what it could not answer:", red=True)
            for line in sorted(set(problems)):
                reporter.write_line(f"  {line[:500]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
