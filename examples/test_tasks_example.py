"""Testing an application's typed tasks (examples/tasks_app.py) with jobcollection's pytest
plugin: in memory, on a clock the test moves, with no MongoDB server and no sleeping.

Needs: `pip install -e ".[memory]" pytest pytest-asyncio` (the plugin comes with jobcollection
and gives the fixtures `memory_jc`, a started in-memory JobCollection, and
`jobcollection_clock`, the ManualClock it runs on), and the settings of examples/pytest.ini
(`asyncio_mode = auto` and `asyncio_default_fixture_loop_scope = function`, for pytest-asyncio).
Run:    pytest examples/test_tasks_example.py
Prints: pytest's summary, "3 passed".
"""

from __future__ import annotations

from tasks_app import EmailArgs, resize, send_email, sign_up, tasks

from jobcollection import JobCollection, ManualClock
from jobcollection.testing import assert_enqueued, drain, perform_job


async def test_sign_up_sends_a_welcome_email(memory_jc: JobCollection) -> None:
    await sign_up(memory_jc, "ada@example.com")  # the application's code enqueues
    [job] = await assert_enqueued(memory_jc, "sendEmail", data={"to": "ada@example.com"})
    assert await drain(memory_jc, tasks) == 1  # every ready job, run by its task
    await job.refresh()
    assert job.doc.status == "completed"
    assert job.doc.result == {"message_id": "<ada@example.com>"}


async def test_a_bounced_email_is_retried_ten_seconds_later(
    memory_jc: JobCollection, jobcollection_clock: ManualClock
) -> None:
    job = send_email.on(memory_jc).job(EmailArgs(to="nobody@bounce.example"))
    stored = await perform_job(memory_jc, job, send_email)  # the real claim and retry rules
    assert stored.doc.status == "waiting"
    assert stored.doc.failures[-1]["type"] == "ConnectionError"
    assert await drain(memory_jc, tasks) == 0  # not yet due
    jobcollection_clock.advance(10)
    assert await drain(memory_jc, tasks) == 1  # the retry ran (and bounced again)


async def test_a_task_is_still_a_function() -> None:
    assert await resize("cat.png", width=50) == "cat.png@50w"  # no job, no collection
