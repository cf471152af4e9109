"""The queues page's rate limits (issue 26): the counters in `<root>.limits` record the limit
they count against, and the page reads the current windows' counters in one capped read:
`n of max per <per>` and how close, a limit per group summed up, counters of an older version
(no limit recorded) still shown. Driven by a ManualClock and `drain()`: nothing sleeps."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from conftest import START
from jobcollection import Job, JobCollection, ManualClock, RateLimit
from jobcollection.local.limiter import COUNTERS_READ, current_windows
from jobcollection.rules.ratecounters import KEPT_MARGIN, KEPT_WINDOWS, window
from jobcollection.web import create_dashboard

Client = Callable[..., httpx.AsyncClient]
SECOND = 1000


async def _noop(job: Job) -> None:
    return None


async def claim_under(jc: JobCollection, limit: RateLimit) -> None:
    """Let a queue of `mail` under this limit claim what the limit allows, and stop."""
    queue = jc.process_jobs(
        "mail", _noop, concurrency=10, rate_limit=limit, poll_interval=None, wakeup=False
    )
    await asyncio.wait_for(queue.drain(), 10)
    await asyncio.wait_for(queue.shutdown("soft"), 10)


def limits_of(jc: JobCollection) -> Any:
    return jc.collection.database[jc.collection.name.removesuffix(".jobs") + ".limits"]


def rate_row(page: str, group_by: str = "") -> str:
    found = re.search(
        rf'<tr class="rate" data-types="mail" data-group-by="{group_by}">(.*?)</tr>', page
    )
    assert found, page
    return html.unescape(found[1])


async def test_a_counter_records_the_limit_it_counts_against(
    jc: JobCollection, clock: ManualClock
) -> None:
    await jc.save_jobs([jc.create_job("mail", {"n": n}) for n in range(5)])
    await claim_under(jc, RateLimit(4, per=60))
    [counter] = await limits_of(jc).find({"_id.at": {"$exists": True}}).to_list(None)
    assert (counter["n"], counter["max"], counter["per"]) == (4, 4, 60_000)


async def test_the_queues_page_shows_how_close_a_rate_limit_is_in_its_window(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await jc.save_jobs([jc.create_job("mail", {"n": n}) for n in range(5)])
    await claim_under(jc, RateLimit(4, per=60))
    http = client(create_dashboard(jc))
    page = (await http.get("/queues")).text
    assert re.search(r'<td class="window full">4 of 4 per 1m \(100%\)</td>', page)
    assert rate_row(page).startswith("<td>mail</td>")
    assert "queues do not register them" not in page  # the note that said it could not
    clock.advance(60)  # the next window: nothing started in it yet
    page = (await http.get("/queues")).text
    assert 'class="rate"' not in page
    assert "No job started under a rate limit in its current window" in page
    await claim_under(jc, RateLimit(4, per=60))
    assert "1 of 4 per 1m (25%)" in rate_row((await http.get("/queues")).text)


async def test_a_limit_per_group_shows_its_groups_and_the_fullest(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    customers = ["a", "a", "a", "<script>alert(1)</script>"]
    await jc.save_jobs([jc.create_job("mail", {"customer": c}) for c in customers])
    await claim_under(jc, RateLimit(2, per=1.0, group_by="data.customer"))
    page = (await client(create_dashboard(jc)).get("/queues")).text
    assert "<script>alert" not in page
    grouped = rate_row(page, "data.customer")
    assert "at most 2 per data.customer per 1s; 3 started in all" in grouped
    assert "2 groups; fullest a: 2 of 2 (100%)" in grouped
    assert re.search(r'<td class="window full">', page)


async def test_a_counter_of_an_older_version_shows_without_its_limit(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    start, end = window(clock.now(), SECOND)
    expire = end + timedelta(milliseconds=SECOND * KEPT_WINDOWS) + KEPT_MARGIN
    await limits_of(jc).insert_many(
        [
            {"_id": {"types": ["mail"], "at": start}, "n": 3, "expireAt": expire},
            {
                "_id": {"types": ["mail"], "at": start - timedelta(seconds=1)},
                "n": 9,
                "expireAt": expire - timedelta(seconds=1),
            },  # the window before: not shown
            {"_id": {"slotsOf": "mail"}, "expireAt": START + timedelta(hours=1)},  # a claim lock
            {"_id": {"types": "mail", "at": "x"}, "n": "many", "expireAt": expire},  # not ours
        ]
    )
    page = (await client(create_dashboard(jc)).get("/queues")).text
    assert "3 started this window, limit unknown" in rate_row(page)
    assert page.count('class="rate"') == 1


async def test_the_read_of_the_counters_is_capped_and_the_page_says_so(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    start, end = window(clock.now(), SECOND)
    expire = end + timedelta(milliseconds=SECOND * KEPT_WINDOWS) + KEPT_MARGIN
    await limits_of(jc).insert_many(
        [
            {
                "_id": {"types": ["mail"], "by": "user", "group": f"u{g}", "at": start},
                "n": 1 + (g == 7),
                "expireAt": expire - timedelta(milliseconds=g == COUNTERS_READ),  # read last
                "max": 2,
                "per": SECOND,
            }
            for g in range(COUNTERS_READ + 1)
        ]
    )
    read = await current_windows(jc.service.store, clock.now())
    assert read.cut and read.windows[0].groups == COUNTERS_READ
    assert not (await current_windows(jc.service.store, clock.now(), COUNTERS_READ + 1)).cut
    page = (await client(create_dashboard(jc)).get("/queues")).text
    assert 'id="rates-cut"' in page and f"Read the {COUNTERS_READ:,} counters" in page
    assert "fullest u7: 2 of 2 (100%)" in rate_row(page, "user")
