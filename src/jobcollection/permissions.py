"""Allow/deny rules for method-layer calls made on behalf of a user.

A call is allowed when no deny rule and at least one allow rule matches, looking under the
method's own name and each permission group it belongs to (METHOD_PERMISSIONS). A rule is a
callable `(user_id, method, params) -> bool` or a list of user ids.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from .constants import METHOD_PERMISSIONS
from .errors import InvalidArgument, InvalidArgumentType

RuleFunction = Callable[[Any, str, tuple[Any, ...]], bool]
Rule = RuleFunction | Collection[Any]


def _as_function(name: str, rule: Any) -> RuleFunction:
    if callable(rule):
        return rule  # type: ignore[no-any-return]
    if isinstance(rule, list | tuple | set | frozenset):
        members = list(rule)
        return lambda user_id, method, params: user_id in members
    raise InvalidArgumentType(name, "a rule must be a callable or a list of user ids")


class Rules:
    """The allow and deny rules of one JobCollection."""

    def __init__(self) -> None:
        self._allow: dict[str, list[RuleFunction]] = {}
        self._deny: dict[str, list[RuleFunction]] = {}

    def allow(self, rules: dict[str, Any]) -> None:
        self._add(self._allow, rules)

    def deny(self, rules: dict[str, Any]) -> None:
        self._add(self._deny, rules)

    @staticmethod
    def _add(table: dict[str, list[RuleFunction]], rules: dict[str, Any]) -> None:
        known = {name for names in METHOD_PERMISSIONS.values() for name in names}
        parsed = {}
        for key, rule in rules.items():
            if key not in known:
                raise InvalidArgument(key, f"not a method or permission group; use {sorted(known)}")
            parsed[key] = _as_function(key, rule)
        for key, fn in parsed.items():
            table.setdefault(key, []).append(fn)

    def permits(self, user_id: Any, method: str, params: tuple[Any, ...]) -> bool:
        names = METHOD_PERMISSIONS[method]

        def matches(table: dict[str, list[RuleFunction]]) -> bool:
            return any(rule(user_id, method, params) for n in names for rule in table.get(n, []))

        return not matches(self._deny) and matches(self._allow)
