"""A web dashboard for a JobCollection: see and steer its jobs from a browser.

`create_dashboard(jc, auth=...)` returns a Starlette application (mount it next to the remote
API, or run it alone; `jobcollection serve` mounts it at `/dashboard`, `jobcollection
dashboard` serves it alone on loopback). Server-rendered HTML with one stylesheet and one
small script, both served by the app (no external assets, nothing inline): an overview of
counts per type and status, the oldest ready job's age and a chart of finished jobs per
minute, updated live (server-sent events); a job list filtered by type, status, user and
data, paged by cursor; a job page; a workflow's page with its graph and a batch's page (how
far each is, their jobs, cancel and retry); and actions on a job or on every job a filter
matches (after showing the count), each a method call made as the dashboard's user, so the
collection's allow/deny rules apply. Needs the `web` extra (`pip install "jobcollection[web]"`).

Against other sites: without `auth` it answers loopback clients asking for a loopback name
(`localhost`, `127.0.0.1`, `[::1]`) or one of `allowed_hosts`, so that a page whose name is
rebound to 127.0.0.1 gets a 403; every response forbids framing and inline script
(Content-Security-Policy) and is not stored; every POST needs the page's form token and is
refused when the browser says another site sent it.

Modules: app.py (routes, who a request is for, actions), pages.py (the HTML),
workflow_pages.py (the HTML of workflows and batches), graph.py (a workflow laid out and
drawn as SVG), assets.py (the stylesheet and the scripts, and the vendored uPlot),
trends.py (the overview's tables and charts of the history), job_facts.py (a job's times,
attempt, worker and tracebacks), security.py (the headers of every response; which requests are
answered), hosts.py (the Host header and the allowed hosts).
"""

from .app import LOOPBACK_USER, create_dashboard

__all__ = ["LOOPBACK_USER", "create_dashboard"]
