"""A pytest plugin for applications that use jobcollection: in-memory job collections on a
manual clock. Loaded automatically when jobcollection is installed (the `pytest11` entry
point); its fixtures are async and need pytest-asyncio:

    async def test_signup_sends_a_welcome_email(memory_jc, jobcollection_clock):
        await signup(memory_jc, "ada@example.com")
        await assert_enqueued(memory_jc, "sendEmail", data={"to": "ada@example.com"})

`jobcollection_clock` is a ManualClock at testing.TEST_START; `memory_jc` a started
JobCollection in memory on it, closed after the test (see jobcollection.testing). Typed tasks
run on it as on any collection: `send_email.on(memory_jc).enqueue(...)`, `drain(memory_jc,
tasks)` for a TaskRegistry. pytest-asyncio needs two settings (examples/pytest.ini):
`asyncio_mode = auto` (or each test marked `@pytest.mark.asyncio`) and
`asyncio_default_fixture_loop_scope = function`; examples/test_tasks_example.py is a suite
that uses them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from .api.collection import JobCollection
from .model.clock import ManualClock
from .testing import TEST_START, memory_collection


@pytest.fixture
def jobcollection_clock() -> ManualClock:
    """A clock that moves only when the test moves it."""
    return ManualClock(TEST_START)


if importlib.util.find_spec("pytest_asyncio") is not None:  # else: no async fixtures
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def memory_jc(jobcollection_clock: ManualClock) -> AsyncIterator[JobCollection]:
        """A started JobCollection in memory on `jobcollection_clock`, closed after."""
        jc = await memory_collection(clock=jobcollection_clock)
        try:
            yield jc
        finally:
            await jc.close()
