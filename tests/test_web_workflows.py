"""The dashboard's workflow and batch pages (web/workflow_pages.py, web/graph.py): the layout
as pure functions of plain nodes (longest-path layers, boxes of many for large workflows,
arrows labelled with their failure policies), then the pages over HTTP as a workflow runs
(counts, progress, the graph's boxes and arrows, the job list paged and filtered), the links
from a job's page, nested batches, and cancel/retry through the allow/deny rules. Hostile
input on these routes: test_attack_web.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from jobcollection import JobCollection, batch, chain, chord, group
from jobcollection.remote import TokenAuth
from jobcollection.web import create_dashboard
from jobcollection.web.graph import MAX_COLUMNS, MAX_ROWS, MAX_SAME, Node, draw, layers, svg

# The dashboard tests' own helpers: its tokens, a client fixture, the form token and rows.
from test_web import TOKENS, Client, csrf_of, row_ids


def count_cell(page: str, status: str) -> str:
    found = re.search(rf'<td class="n" data-status="{status}">(?:<a [^>]*>)?([\d,]+)', page)
    assert found, status
    return found[1]


def node(page: str, job_id: Any) -> str:
    """The graph's box of one job: its element's opening tag and link."""
    found = re.search(
        rf'<g class="node job [a-z]+"[^>]*data-job="{job_id}">(<a href="[^"]+">)?', page
    )
    assert found, f"no box for {job_id}"
    return found[0]


def arrows(page: str) -> list[str]:
    """The class attribute of every arrow drawn."""
    return re.findall(r'<g class="(edge[^"]*)"', page)


async def finish(jc: JobCollection, job_type: str) -> None:
    [job] = await jc.get_work(job_type)
    assert await job.done({"type": job_type})


async def fail(jc: JobCollection, job_type: str) -> None:
    [job] = await jc.get_work(job_type)
    assert await job.fail("broken", fatal=True)


async def status_of(jc: JobCollection, job_id: Any) -> str | None:
    job = await jc.get_job(job_id)
    return None if job is None else job.doc.status


# --- the layout, pure ---------------------------------------------------------------------------


def test_layers_are_the_longest_path_from_a_first_job() -> None:
    nodes = [
        Node("a", "t", "ready"),
        Node("b", "t", "waiting", (("a", "cancel"),)),
        Node("c", "t", "waiting", (("b", "cancel"),)),
        Node("d", "t", "waiting", (("a", "ignore"), ("c", "cancel"), ("elsewhere", "cancel"))),
        Node("e", "t", "ready", (("not-in-the-workflow", "cancel"),)),
    ]
    assert layers(nodes) == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 0}
    # A cycle (saving refuses one; a document edited by hand may hold one) ends, drawn last.
    cycle = [
        Node("x", "t", "waiting", (("y", "cancel"),)),
        Node("y", "t", "waiting", (("x", "cancel"),)),
    ]
    assert layers([Node("a", "t", "ready"), *cycle]) == {"a": 0, "x": 1, "y": 1}


def test_many_jobs_of_a_type_in_a_step_are_one_box_with_their_counts() -> None:
    head = Node("h", "head", "completed")
    parts = [
        Node(f"p{n}", "part", "completed" if n < 7 else "failed", (("h", "cancel"),))
        for n in range(10)
    ]
    few = [Node(f"f{n}", "few", "ready", (("h", "cancel"),)) for n in range(MAX_SAME)]
    tail = Node("t", "tail", "waiting", tuple((f"p{n}", "ignore") for n in range(10)))
    drawing = draw([head, *parts, *few, tail])
    assert [len(column) for column in drawing.columns] == [1, 1 + MAX_SAME, 1]
    [many] = [box for box in drawing.columns[1] if box.jobs > 1]
    assert (many.job_type, many.jobs, many.counts) == (
        "part",
        10,
        (("failed", 3), ("completed", 7)),
    )
    assert many.status == "failed"  # what needs looking at first
    assert drawing.grouped == 10 and drawing.edges == 10 + MAX_SAME + 10
    into_tail = [a for a in drawing.arrows if a.target == drawing.columns[2][0].key]
    assert [(a.edges, a.policies) for a in into_tail] == [(10, ("ignore",))]


def test_a_column_of_many_types_and_a_long_chain_stay_within_bounds() -> None:
    wide = [Node(f"w{n}", f"type{n:02}", "ready") for n in range(MAX_ROWS + 5)]
    wide += [Node(f"x{n}", "type00", "ready") for n in range(3)]  # type00: 4 jobs, the largest
    [column] = draw(wide).columns
    assert len(column) == MAX_ROWS
    assert column[0].job_type == "type00" and column[0].jobs == 4
    rest = [box for box in column if box.job_type is None]
    assert len(rest) == 1 and rest[0].types == 6 and rest[0].label() == "6 types"

    chain_ = [Node(0, "step", "completed")]
    chain_ += [Node(n, "step", "waiting", ((n - 1, "cancel"),)) for n in range(1, MAX_COLUMNS + 10)]
    drawing = draw(chain_)
    assert len(drawing.columns) == MAX_COLUMNS and drawing.folded_layers == 11
    last = drawing.columns[-1][0]
    assert (last.jobs, last.steps) == (11, 11) and "in 11 steps" in last.detail()
    assert drawing.edges == MAX_COLUMNS + 9 and len(drawing.arrows) == MAX_COLUMNS - 1


def test_the_svg_links_boxes_labels_policies_and_escapes() -> None:
    hostile = '<script>alert("x")</script>'
    nodes = [
        Node("a", hostile, "failed"),
        Node("b", "next", "ready", (("a", "ignore"),), frozenset({"a"})),
        Node("c", "other", "cancelled", (("a", "cancel"),)),
    ]
    out = svg(draw(nodes), lambda box: f"/jobs/{box.job_id}" if box.job_id != "c" else None)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert (
        '<g class="node job failed" data-box="0" data-jobs="1" data-job="a"><a href="/jobs/a">'
        in out
    )
    assert 'data-job="c"><title>' in out  # no link
    assert re.findall(r'<g class="(edge[^"]*)"', out) == ["edge policy-ignore dropped", "edge"]
    assert '<text class="edge-label"' in out and ">ignore</text>" in out
    assert "style=" not in out


# --- the pages ----------------------------------------------------------------------------------


async def test_a_workflow_page_shows_its_graph_counts_and_jobs_as_it_runs(
    jc: JobCollection, client: Client
) -> None:
    extract = jc.create_job("extract")
    parts = [jc.create_job("transform", {"n": n}).retry(0) for n in range(3)]
    load = jc.create_job("load")
    workflow = await jc.save_workflow(chain(extract, chord(parts, load, on_failure="ignore")))
    http = client(create_dashboard(jc))

    page = (await http.get(f"/workflows/{workflow.id}")).text
    assert f"<h1>Workflow {workflow.id}</h1>" in page
    assert 'data-finished="0" data-total="5"' in page and '<progress max="5" value="0">' in page
    assert (count_cell(page, "ready"), count_cell(page, "waiting")) == ("1", "4")
    assert f'<a href="/jobs/{extract.id}">' in node(page, extract.id)
    assert 'class="node job ready"' in node(page, extract.id)
    for part in parts:
        assert 'class="node job waiting"' in node(page, part.id)
    assert sorted(arrows(page)) == ["edge"] * 3 + ["edge policy-ignore"] * 3
    assert sorted(row_ids(page)) == sorted(str(j.id) for j in [extract, *parts, load])
    load_row = re.search(rf'<tr class="job" data-id="{load.id}">.*?</tr>', page)
    assert load_row and load_row[0].count("(ignore)") == 3  # it waits on the three parts

    await finish(jc, "extract")
    await finish(jc, "transform")
    await finish(jc, "transform")
    await fail(jc, "transform")
    page = (await http.get(f"/workflows/{workflow.id}")).text
    assert 'data-finished="4" data-total="5"' in page and "(80%): in progress" in page
    assert (count_cell(page, "completed"), count_cell(page, "failed")) == ("3", "1")
    assert count_cell(page, "ready") == "1"  # load runs without the failed part
    assert sorted(arrows(page)) == ["edge"] * 3 + ["edge policy-ignore"] * 2 + [
        "edge policy-ignore dropped"
    ]
    failed = await http.get(f"/workflows/{workflow.id}", params={"status": "failed"})
    assert len(row_ids(failed.text)) == 1 and 'id="every-job"' in failed.text
    await finish(jc, "load")
    page = (await http.get(f"/workflows/{workflow.id}")).text
    assert 'data-finished="5" data-total="5"' in page and "(100%): done" in page

    job_page = (await http.get(f"/jobs/{load.id}")).text
    assert f'<a id="workflow" href="/workflows/{workflow.id}">' in job_page
    missing = await http.get(f"/workflows/{'0' * 24}")
    assert missing.status_code == 404 and "no workflow" in missing.text


async def test_a_large_workflow_draws_boxes_of_many_and_pages_its_jobs(
    jc: JobCollection, client: Client
) -> None:
    parts = [jc.create_job("part", {"n": n}) for n in range(120)]
    total = jc.create_job("sum")
    workflow = await jc.save_workflow(chord(parts, total))
    http = client(create_dashboard(jc))

    page = (await http.get(f"/workflows/{workflow.id}")).text
    box = re.search(r'<g class="node group ready" data-box="\d+" data-jobs="120">(<a [^>]+>)', page)
    assert box and f'href="/workflows/{workflow.id}?type=part#jobs"' in box[1]
    assert "120 jobs are drawn in boxes of several" in page
    assert arrows(page) == ["edge"] and "\u00d7120</text>" in page  # one arrow for 120
    assert page.count('<g class="node ') == 2

    first = row_ids(page)
    assert len(first) == 50
    seen = list(first)
    while (more := re.search(r'<a id="next" href="([^"]+)"', page)) is not None:
        page = (await http.get(more[1].replace("&amp;", "&"))).text
        seen += row_ids(page)
    assert sorted(seen) == sorted(str(j.id) for j in [*parts, total])
    only = (await http.get(f"/workflows/{workflow.id}", params={"type": "sum"})).text
    assert row_ids(only) == [str(total.id)]


async def test_a_batch_page_shows_its_progress_members_and_where_it_belongs(
    jc: JobCollection, client: Client
) -> None:
    inner = batch([jc.create_job("resize", {"n": n}) for n in range(2)])
    imports = [jc.create_job("import", {"f": f}).retry(0) for f in "abc"]
    outer = batch([*imports, inner], on_complete=jc.create_job("cleanup"))
    workflow = await jc.save_workflow(chain(jc.create_job("start"), outer))
    await finish(jc, "start")
    await finish(jc, "import")
    await fail(jc, "import")
    http = client(create_dashboard(jc))

    page = (await http.get(f"/batches/{outer.id}")).text
    assert f"<h1>Batch {outer.id}</h1>" in page
    assert 'data-finished="2" data-total="5"' in page  # the members, not the callback
    assert '<progress max="5" value="2">' in page and "(40%): in progress" in page
    assert (count_cell(page, "completed"), count_cell(page, "failed")) == ("1", "1")
    assert len(row_ids(page)) == 5 and 'id="graph"' not in page
    assert f'Part of workflow <a href="/workflows/{workflow.id}">' in page
    assert f'Batches nested in it: <a href="/batches/{inner.id}">' in page
    nested = (await http.get(f"/batches/{inner.id}")).text
    assert (
        'data-total="2"' in nested and f'Nested in batch <a href="/batches/{outer.id}">' in nested
    )
    whole = (await http.get(f"/workflows/{workflow.id}")).text
    assert 'data-total="7"' in whole and "Batches in it:" in whole

    member = (await http.get(f"/jobs/{imports[0].id}")).text
    assert f'class="batch" href="/batches/{outer.id}"' in member
    resize = (await http.get(f"/jobs/{inner.jobs[0].id}")).text
    assert re.search(rf'/batches/{outer.id}".*/batches/{inner.id}".*outermost first', resize)
    assert (await http.get(f"/batches/{'0' * 24}")).status_code == 404


async def test_cancel_and_retry_a_workflow_from_its_page(jc: JobCollection, client: Client) -> None:
    first, second, third = jc.create_job("a").retry(0), jc.create_job("b"), jc.create_job("c")
    aside = jc.create_job("d")
    workflow = await jc.save_workflow(group(chain(first, second, third), aside))
    http = client(create_dashboard(jc))
    page = (await http.get(f"/workflows/{workflow.id}")).text
    assert 'value="cancel"' in page and 'value="retry"' not in page  # nothing failed yet

    await fail(jc, "a")  # b and c are cancelled with it
    page = (await http.get(f"/workflows/{workflow.id}")).text
    assert 'value="cancel"' in page and 'value="retry"' in page
    csrf = csrf_of(page)
    retried = await http.post(f"/workflows/{workflow.id}/retry", data={"csrf": csrf})
    assert retried.status_code == 303 and retried.headers["location"] == f"/workflows/{workflow.id}"
    ids = [first.id, second.id, third.id, aside.id]
    # a waits for the next promotion (as Workflow.retry), b and c for a
    assert [await status_of(jc, i) for i in ids] == ["waiting", "waiting", "waiting", "ready"]

    cancelled = await http.post(f"/workflows/{workflow.id}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 303
    assert {await status_of(jc, i) for i in ids} == {"cancelled"}
    page = (await http.get(f"/workflows/{workflow.id}")).text
    assert 'value="cancel"' not in page and 'value="retry"' in page
    assert (
        await http.post(f"/workflows/{workflow.id}/nope", data={"csrf": csrf})
    ).status_code == 404
    gone = await http.post(f"/workflows/{'0' * 24}/cancel", data={"csrf": csrf})
    assert gone.status_code == 404

    imports = batch([jc.create_job("import") for _ in range(2)], on_complete=jc.create_job("x"))
    await jc.save_workflow(imports)
    done = await http.post(f"/batches/{imports.id}/cancel", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/batches/{imports.id}"
    statuses = [await status_of(jc, j.id) for j in imports.jobs]
    assert statuses == ["cancelled", "cancelled", "ready"]  # the callback ignores them


async def test_workflow_actions_go_through_the_rules(jc: JobCollection, client: Client) -> None:
    jc.allow(admin=["tester", "viewer"], manager=["nobody"])
    jc.deny(jobCancel=["nobody"])
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(TOKENS), read_only=lambda user: user == "viewer"
    )
    workflow = await jc.save_workflow(chain(jc.create_job("a"), jc.create_job("b")))
    pages = {}
    for token in TOKENS:
        http = client(app, headers={"authorization": f"Bearer {token}"})
        page = (await http.get(f"/workflows/{workflow.id}")).text
        pages[token] = (http, page)
    assert 'value="cancel"' in pages["admin-token"][1]
    assert 'id="actions"' not in pages["viewer-token"][1]  # read-only
    assert 'value="cancel"' not in pages["nobody-token"][1]  # the rules deny it jobCancel
    for token in ("viewer-token", "nobody-token"):
        http, _ = pages[token]
        job_page = (await http.get(f"/jobs/{workflow.ids[0]}")).text  # the user's own token
        csrf = csrf_of(job_page if token == "nobody-token" else pages["admin-token"][1])
        reply = await http.post(f"/workflows/{workflow.id}/cancel", data={"csrf": csrf})
        assert reply.status_code == 403, token
    assert {j.doc.status for j in await workflow.jobs()} == {"ready", "waiting"}
    http, page = pages["admin-token"]
    reply = await http.post(f"/workflows/{workflow.id}/cancel", data={"csrf": csrf_of(page)})
    assert reply.status_code == 303
    assert {j.doc.status for j in await workflow.jobs()} == {"cancelled"}


async def test_the_page_reads_and_acts_on_a_bounded_number_of_jobs(
    jc: JobCollection, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond MAX_MEMBERS jobs the page counts and draws the newest and says so; beyond
    MAX_BULK jobs to change, an action is refused (400) and changes nothing."""
    from jobcollection.web import app as web_app

    monkeypatch.setattr(web_app, "MAX_MEMBERS", 4)
    monkeypatch.setattr(web_app, "MAX_BULK", 5)
    workflow = await jc.save_workflow(group(jc.create_job("part") for _ in range(6)))
    http = client(create_dashboard(jc))
    page = (await http.get(f"/workflows/{workflow.id}")).text
    assert 'data-total="4"' in page and "it has more jobs: these are its newest 4" in page
    assert len(row_ids(page)) == 6  # the list has them all
    refused = await http.post(f"/workflows/{workflow.id}/cancel", data={"csrf": csrf_of(page)})
    assert refused.status_code == 400 and "more than 5 jobs to cancel" in refused.text
    assert {j.doc.status for j in await workflow.jobs()} == {"ready"}
