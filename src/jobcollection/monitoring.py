"""Count the database commands (round trips) a piece of work issues on a real MongoDB.

`JobCollection.commands` counts the calls jobcollection makes through its driver seam. On a
real server a call can cost more than one round trip (a `find` that needs a `getMore`), and
other code shares the client, so the benchmarks measure with pymongo command monitoring:

    counter = CommandCounter(database="app")
    client = AsyncMongoClient(uri, event_listeners=[counter])
    before = counter.total
    ...                                   # the work to measure
    print(counter.total - before, counter.by_name)

Every command the driver starts is one round trip. Handshakes and server monitoring are not
commands and are not counted.
"""

from __future__ import annotations

import threading
from collections import Counter

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """A pymongo command listener that counts started commands by name.

    With `database`, only commands sent to that database are counted (the admin commands a
    client sends on its own, such as `endSessions`, go elsewhere). Thread-safe, so a
    synchronous client used from several threads may share one counter.
    """

    def __init__(self, database: str | None = None) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._by_name: Counter[str] = Counter()
        self._failed = 0

    @property
    def total(self) -> int:
        """Commands started since creation or the last reset()."""
        with self._lock:
            return sum(self._by_name.values())

    @property
    def by_name(self) -> dict[str, int]:
        """A copy of the counts per command name (`insert`, `find`, `update`, `getMore`...)."""
        with self._lock:
            return dict(self._by_name)

    @property
    def failed_count(self) -> int:
        """Counted commands that the server answered with an error."""
        with self._lock:
            return self._failed

    def reset(self) -> None:
        with self._lock:
            self._by_name.clear()
            self._failed = 0

    def _counts(self, database_name: str) -> bool:
        return self.database is None or database_name == self.database

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self._counts(event.database_name):
            with self._lock:
                self._by_name[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to count: the command was counted when it started."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        if self._counts(event.database_name):
            with self._lock:
                self._failed += 1
