"""Workers anywhere: a JobCollection's methods over HTTP, and a client with the same API.

On the machine with the database, `create_app(jc, auth=TokenAuth(...))` is an ASGI
application (Starlette) serving the method layer; anywhere else, `RemoteJobCollection(url,
token=...)` gives `create_job`, `get_work`, `process_jobs` and every `Job` action over it.
The server side needs the `server` extra (Starlette, uvicorn, websockets), the client side the
`client` extra (httpx); `remote` installs both. Each name is imported when first used, so
either side runs with its own extra only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .auth import Auth, TokenAuth, hash_token, new_token
    from .client import RemoteJobCollection, RemoteService

_HOMES = {
    "create_app": "app",
    "Auth": "auth",
    "TokenAuth": "auth",
    "hash_token": "auth",
    "new_token": "auth",
    "RemoteJobCollection": "client",
    "RemoteService": "client",
}
"""The module of each public name (server names need Starlette, client ones httpx)."""

__all__ = [
    "Auth",
    "RemoteJobCollection",
    "RemoteService",
    "TokenAuth",
    "create_app",
    "hash_token",
    "new_token",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
