"""What every dashboard response carries, and which requests the dashboard answers at all.

`Guard` wraps the whole application, outside Starlette's own error handling, so that its 404s,
405s and even a 500 carry the same headers as the pages:

- SECURITY_HEADERS: a Content-Security-Policy that allows only the app's own files (no inline
  script or style, no framing, forms posted only to itself), `X-Frame-Options: DENY`,
  `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`, and cross-origin
  opener and resource policies that keep other sites' pages from holding a window on it or
  loading its responses;
- `Cache-Control: no-store` unless the route chose (only the versioned static files do):
  pages hold job data;
- a URL longer than MAX_URL_BYTES is answered 414 before any route reads it;
- a request the browser says another site made (`Sec-Fetch-Site: cross-site`, or
  `same-site`: another port of localhost is the same site) is answered 403 unless it is a
  plain navigation (a link followed): no other page may post to it, load its event stream
  or fetch, embed or frame its pages (fetch metadata's resource isolation policy);
- when the dashboard checks Host (without auth, or with `allowed_hosts`), a request for
  another name, or without exactly one well-formed Host header, is answered 403 (hosts.py).
"""

from __future__ import annotations

from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import pages
from .hosts import is_allowed, parse_host

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # Not no-referrer: under it browsers send `Origin: null` with the pages' own form posts,
    # which the dashboard then refuses as cross-site.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
"""The headers every dashboard response carries (replacing any a route set)."""
NO_STORE = "no-store"
MAX_URL_BYTES = 8 * 1024
"""The longest path and query string the dashboard reads (longer: 414)."""

_RAW_HEADERS = [(k.encode(), val.encode()) for k, val in SECURITY_HEADERS.items()]
_REPLACED = {k.encode() for k in SECURITY_HEADERS}


def with_security_headers(send: Send) -> Send:
    """`send`, adding SECURITY_HEADERS (and `Cache-Control: no-store` unless the response
    has a Cache-Control) to the start of every response."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, val) for k, val in message.get("headers", ()) if k.lower() not in _REPLACED
            ]
            if not any(k.lower() == b"cache-control" for k, _ in headers):
                headers.append((b"cache-control", NO_STORE.encode()))
            message = {**message, "headers": [*headers, *_RAW_HEADERS]}
        await send(message)

    return sending


HOST_REFUSED = (
    "this dashboard answers only the host names it is meant to be reached by (localhost, "
    "loopback addresses and its allowed hosts): open it by one of them"
)


def refusal(scope: Scope, hosts: tuple[str, ...] | None) -> tuple[int, str, str] | None:
    """Why the dashboard does not answer this request (status, title, message), or None."""
    url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(
        scope.get("query_string", b"")
    )
    if url_bytes > MAX_URL_BYTES:
        return 414, "URL too long", f"URLs are limited to {MAX_URL_BYTES:,} bytes"
    if not _own(scope):
        return 403, "Forbidden", "another site's page may only link to this dashboard"
    if hosts is None:
        return None
    given = [val for k, val in scope["headers"] if k.lower() == b"host"]
    host = parse_host(given[0].decode("latin-1")) if len(given) == 1 else None
    if host is None or not is_allowed(host, hosts):
        return 403, "Forbidden", HOST_REFUSED
    return None


def _own(scope: Scope) -> bool:
    """Whether the request is one of the dashboard's own, or a link another site followed
    (or made by something other than a browser: no fetch metadata)."""
    metadata = {
        k.lower(): val for k, val in scope["headers"] if k.lower().startswith(b"sec-fetch-")
    }
    if metadata.get(b"sec-fetch-site", b"same-origin") in (b"same-origin", b"none"):
        return True
    return (
        scope["method"] in ("GET", "HEAD")
        and metadata.get(b"sec-fetch-mode") == b"navigate"
        and metadata.get(b"sec-fetch-dest") not in (b"object", b"embed", b"iframe", b"frame")
    )


class Guard:
    """The dashboard application wrapped: `hosts` is None when any Host is served, else the
    allowed hosts (loopback names are always served)."""

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_security_headers(send)
        refused = refusal(scope, self.hosts)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, title, message = refused
        base = str(scope.get("root_path", ""))
        await HTMLResponse(pages.problem(None, title, message, base), status)(scope, receive, send)
