"""Every code example of README.md and docs/**/*.md runs (issue 20).

How a page's fenced code blocks are run (docs/development.md repeats this for writers):

- ```python blocks of a page run in order as one session: one namespace, one event loop, top-level
  `await` allowed. Before the first block the namespace holds `jc`, a started JobCollection on a
  fresh in-memory database `db` (the collection "queue.jobs") on a ManualClock `clock` at
  `jobcollection.testing.TEST_START`, and `asyncio`. A page may add hidden setup, run first, in
  an HTML comment whose first line starts with `<!-- setup:` (a note may follow) and whose last
  line is `-->`. Each block runs in the page's event loop, except a block that calls
  `asyncio.run(...)` itself (a script): that one runs outside it. Python runs in a temporary
  directory (files an example writes, such as a tokens file, land there). After the last block,
  every JobQueue the page started is shut down and every JobCollection it holds is closed. A
  worker that raises NameError (or the like) fails the page, though a queue only fails the job.
- ```sh blocks run as bash scripts (`set -euo pipefail`) from the repository's root, with the
  venv's `python` and `jobcollection` first on PATH and no MONGODB_URI.
- ```yaml blocks are parsed (Kubernetes manifests).
- ```text blocks are output and diagrams: not examples.
- Every other block, and a python, sh or yaml block that cannot run here (it needs a real
  MongoDB, a remote host, systemd, node.js), is preceded by `<!-- not run: REASON -->` on the
  line just before its fence. Marked python blocks are still compiled.

Runnable blocks hold no placeholders: no `...` statement, no `<angle placeholder>`.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"python", "sh", "yaml"}
NOT_EXAMPLES = {"text"}
NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>.*?) -->$")
SETUP = re.compile(r"^<!-- setup:[^\n]*\n(?P<code>.*?)\n-->$", re.M | re.S)
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>.*)$")
SH_TIMEOUT_S = 40


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    setup: str = ""


def parse(path: Path) -> Page:
    text = path.read_text()
    lines = text.split("\n")
    page = Page(path, setup="\n".join(m["code"] for m in SETUP.finditer(text)))
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        lang = (match["info"].split() or [""])[0].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][indent:])
            j += 1
        assert j < len(lines), f"{path.relative_to(ROOT)}:{i + 1}: unclosed fence"
        previous = lines[i - 1].strip() if i else ""
        marker = NOT_RUN.match(previous)
        page.blocks.append(
            Block(path, i + 1, lang, "\n".join(body) + "\n", marker and marker["reason"])
        )
        i = j + 1
    return page


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


ALL = [parse(path) for path in PAGES]


def test_every_example_runs_or_says_why_not() -> None:
    """Each block is run, or marked with a reason; the count of each is printed (-rA, -s)."""
    unmarked, no_reason, counts = [], [], Counter[str]()
    for page in ALL:
        for block in page.blocks:
            if block.lang in NOT_EXAMPLES:
                counts["output or diagram"] += 1
            elif block.not_run is not None:
                counts[f"not run ({block.lang})"] += 1
                if len(block.not_run.split()) < 2:
                    no_reason.append(block.where)
            elif block.lang in RUNNABLE:
                counts[f"run ({block.lang})"] += 1
            else:
                unmarked.append(f"{block.where} ({block.lang or 'no language'})")
    assert not unmarked, (
        f"blocks neither runnable nor marked `<!-- not run: REASON -->`: {unmarked}"
    )
    assert not no_reason, f"`not run` markers need a reason of a few words: {no_reason}"
    print(dict(sorted(counts.items())))
    assert counts["run (python)"] > 0 and counts["run (sh)"] > 0


def test_runnable_blocks_hold_no_placeholders() -> None:
    found = []
    for page in ALL:
        for block in page.blocks:
            if block.not_run is not None or block.lang not in RUNNABLE:
                continue
            for n, line in enumerate(block.code.splitlines(), start=block.line + 1):
                code = line.split("#", 1)[0].strip() if block.lang != "yaml" else line
                if code == "..." or re.search(r"<[a-z][a-z _-]*>", code):
                    found.append(f"{page_id(page.path)}:{n}: {line.strip()}")
    assert not found, found


def test_marked_python_blocks_compile() -> None:
    for page in ALL:
        for block in page.blocks:
            if block.lang == "python" and block.not_run is not None:
                compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _calls_asyncio_run(code: str) -> bool:
    for node in ast.walk(ast.parse(code)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "asyncio"
        ):
            return True
    return False


async def _session_start(namespace: dict[str, Any]) -> None:
    from jobcollection.testing import memory_collection

    jc = await memory_collection()
    namespace.update(jc=jc, db=jc.collection.database, clock=jc.clock, asyncio=asyncio)
    namespace["__name__"] = "__docs__"
    namespace["__docs_collections__"] = [jc]  # closed at the end, even if a page rebinds `jc`


async def _session_end(namespace: dict[str, Any]) -> None:
    from jobcollection import JobCollection, JobQueue

    queues = [*namespace["__docs_queues__"], *namespace.values()]
    for value in {id(q): q for q in queues if isinstance(q, JobQueue)}.values():
        await value.shutdown("hard", quiet=True)
    collections = [*namespace["__docs_collections__"], *namespace.values()]
    for value in {id(c): c for c in collections if isinstance(c, JobCollection)}.values():
        await value.shutdown_job_server(timeout=0)
        await value.close()


BROKEN = (NameError, AttributeError, TypeError, ImportError, SyntaxError)


class _BrokenWorkers(logging.Handler):
    """A worker of an example that raises NameError (and the like) only fails its job: the
    queue logs it. Such a log record fails the page."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], BROKEN):
            self.found.append(f"{record.getMessage()}: {record.exc_info[1]!r}")


def _run_python(page: Page, blocks: list[Block]) -> None:
    from jobcollection import JobQueue

    namespace: dict[str, Any] = {"__docs_queues__": []}
    init = JobQueue.__init__

    def tracked_init(self: JobQueue, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)  # every queue a page starts is shut down at its end
        namespace["__docs_queues__"].append(self)

    loop = asyncio.new_event_loop()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        asyncio.set_event_loop(loop)
        JobQueue.__init__ = tracked_init  # type: ignore[method-assign]
        broken = _BrokenWorkers()
        logging.getLogger("jobcollection").addHandler(broken)
        try:
            loop.run_until_complete(_session_start(namespace))
            chunks = [(page.setup, f"{page_id(page.path)} (setup)")] if page.setup else []
            chunks += [(block.code, block.where) for block in blocks]
            for code, where in chunks:
                compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                if _calls_asyncio_run(code):
                    eval(compiled, namespace)
                    asyncio.set_event_loop(loop)  # asyncio.run() unset it
                    continue

                async def run(compiled: Any = compiled) -> None:
                    result = eval(compiled, namespace)
                    if asyncio.iscoroutine(result):
                        await asyncio.wait_for(result, 20)

                started = time.perf_counter()
                loop.run_until_complete(run())
                if (took := time.perf_counter() - started) > 1:
                    print(f"{where}: {took:.1f} s")
            loop.run_until_complete(_session_end(namespace))
            assert not broken.found, f"{page_id(page.path)}: workers raised {broken.found}"
        finally:
            logging.getLogger("jobcollection").removeHandler(broken)
            JobQueue.__init__ = init  # type: ignore[method-assign]
            os.chdir(cwd)
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


def _run_sh(block: Block) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SH_TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"{block.where}: exit {proc.returncode}\n{block.code}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )


@pytest.mark.parametrize("page", ALL, ids=[page_id(p.path) for p in ALL])
def test_page_examples_run(page: Page) -> None:
    runnable = [b for b in page.blocks if b.not_run is None and b.lang in RUNNABLE]
    for block in runnable:
        if block.lang == "yaml":
            yaml = pytest.importorskip("yaml")  # PyYAML comes with the docs extra (mkdocs)
            assert list(yaml.safe_load_all(block.code)), block.where
    python = [b for b in runnable if b.lang == "python"]
    if python or page.setup:
        with warnings.catch_warnings():
            # The early API's deprecation warnings are what its page shows.
            warnings.filterwarnings("ignore", "start_jobs|stop_jobs", DeprecationWarning)
            _run_python(page, python)
    for block in runnable:
        if block.lang == "sh":
            _run_sh(block)
