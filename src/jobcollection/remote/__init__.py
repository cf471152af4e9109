"""Workers anywhere: a JobCollection's methods over HTTP, and a client with the same API.

On the machine with the database, `create_app(jc, auth=TokenAuth(...))` is an ASGI
application (Starlette) serving the method layer; anywhere else, `RemoteJobCollection(url,
token=...)` gives `create_job`, `get_work`, `process_jobs` and every `Job` action over it.
Needs the `remote` extra (`pip install "jobcollection[remote]"`).
"""

from .app import create_app
from .auth import Auth, TokenAuth, hash_token, new_token
from .client import RemoteJobCollection, RemoteService

__all__ = [
    "Auth",
    "RemoteJobCollection",
    "RemoteService",
    "TokenAuth",
    "create_app",
    "hash_token",
    "new_token",
]
