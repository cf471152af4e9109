"""Events emitted by the method layer: `call`, `error` and one named after each method."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("jobcollection")


@dataclass(frozen=True, slots=True)
class MethodEvent:
    """What happened in one method call, as handed to event handlers."""

    method: str
    params: tuple[Any, ...]
    user_id: Any
    error: BaseException | None
    return_value: Any


Handler = Callable[[MethodEvent], Awaitable[None] | None]


class EventEmitter:
    """A minimal emitter: handlers run in registration order; a failing handler is logged."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[Handler, bool]]] = {}

    def on(self, name: str, handler: Handler) -> None:
        self._handlers.setdefault(name, []).append((handler, False))

    def once(self, name: str, handler: Handler) -> None:
        self._handlers.setdefault(name, []).append((handler, True))

    def off(self, name: str, handler: Handler | None = None) -> None:
        """Remove one handler, or every handler of the event when none is given."""
        if handler is None:
            self._handlers.pop(name, None)
            return
        self._handlers[name] = [(h, o) for h, o in self._handlers.get(name, []) if h != handler]

    def listens(self, names: tuple[str, ...]) -> bool:
        """Whether any handler is registered for one of these events (so that building an
        event can be skipped when nobody would receive it)."""
        return any(self._handlers.get(name) for name in names)

    async def emit(self, name: str, event: MethodEvent) -> None:
        registered = self._handlers.get(name, [])
        if not registered:
            return
        self._handlers[name] = [(h, o) for h, o in registered if not o]
        for handler, _ in registered:
            try:
                outcome = handler(event)
                if outcome is not None:
                    await outcome
            except Exception:
                logger.exception("event handler for %r raised", name)
