"""The method layer: every operation as a named method of the original (jobSave, getWork, ...)
with the original's wire-shaped parameters, for `jc.call` and remote callers.

Parameters are positional arguments and an options dict with the original camelCase keys,
durations in milliseconds, aware datetimes. The operations' one codec (ops.parse) turns them
into an operation value (a call whose parameters do not have the method's shape is refused
with InvalidArgument before any allow/deny rule sees it); this layer applies the allow/deny
rules for calls made on behalf of a user, and runs the operation on the core (local/core.py), which
checks the limits, fires the events and writes the log line as for any call.

A report on a running job (REPORTS) made on behalf of a user applies only to a run that user
claimed (the claim records its user, document.CLAIMER), unless the rules allow the user under
the `admin` group; on a run another user claimed it raises PermissionDenied. Server code (no
user) may report on any run.
"""

from __future__ import annotations

from typing import Any

from ..local.core import Core, Origin
from ..model.constants import METHODS
from ..model.errors import InvalidArgument, PermissionDenied
from ..model.ops import BY_METHOD, parse
from .permissions import Rules

REPORTS = frozenset({"jobLog", "jobProgress", "jobDone", "jobFail", "jobHeartbeat", "jobRelease"})
"""The methods by which a worker reports on a job it holds: from a user, only on runs that
user claimed (or from an admin)."""


class MethodLayer:
    """`jc.call`: the original's methods by name, with wire-shaped parameters, on behalf of
    a user (checked against the allow/deny rules) or of trusted server code."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.rules = Rules()

    async def call(self, method: str, params: tuple[Any, ...], user_id: Any = None) -> Any:
        """Run a method; with a user_id the allow/deny rules decide, once the parameters
        have been parsed (InvalidArgument: no rule is asked about a malformed call); the
        core does the rest (limits, clock, events) as for any call. A rule that raises
        refuses the call (PermissionDenied; the rule's error is logged). A method that takes
        ids and was given one id rather than a list answers for that one (getJob: the
        document or None; jobHeartbeat, jobRelease: whether it applied)."""
        if type(method) is not str or method not in BY_METHOD:
            raise InvalidArgument(
                "method", f"unknown method {method!r}; use one of {list(METHODS)}"
            )
        origin = Origin(method, user_id, params)
        try:
            op = parse(method, params)
            if user_id is not None:
                if not self.rules.permits(user_id, method, params):
                    raise PermissionDenied(f"Method not authorized: {method}")
                if method in REPORTS and self.rules.is_admin(user_id, method, params):
                    origin = Origin(method, user_id, params, admin=True)
        except Exception as exc:
            await self.core.emit(None, origin, exc, None)
            raise
        result = await self.core.run(op, origin)
        if op.one_id and not isinstance(params[0], list | tuple):
            return op.for_one_id(result)
        return result
