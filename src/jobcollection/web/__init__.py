"""A web dashboard for a JobCollection: see and steer its jobs from a browser.

`create_dashboard(jc, auth=...)` returns a Starlette application (mount it next to the remote
API, or run it alone; `jobcollection serve` mounts it at `/dashboard`, `jobcollection
dashboard` serves it alone on loopback). Server-rendered HTML with inline CSS and a little
JavaScript, no external assets: an overview of counts per type and status, the oldest ready
job's age and a chart of finished jobs per minute, updated live (server-sent events); a job
list filtered by type, status, user and data, paged by cursor; a job page; and actions on a
job or on every job a filter matches (after showing the count), each a method call made as
the dashboard's user, so the collection's allow/deny rules apply. Needs the `web` extra
(`pip install "jobcollection[web]"`).

Modules: app.py (routes, who a request is for, actions), pages.py (the HTML), activity.py
(finished jobs per minute and their chart).
"""

from .app import LOOPBACK_USER, create_dashboard

__all__ = ["LOOPBACK_USER", "create_dashboard"]
