"""Allow/deny rules for method-layer calls made on behalf of a user.

A call is allowed when no deny rule and at least one allow rule matches, looking under the
method's own name and each permission group it belongs to (METHOD_PERMISSIONS). A rule is a
callable `(user_id, method, params) -> bool` or a list of user ids.

jobSaveMany is a batch of jobSaves, so the jobSave rules hold for each of its documents and
the batch cannot be used to get round them. A jobSaveMany call is allowed exactly when

- no deny rule under `jobSaveMany` matches the batch (called with "jobSaveMany" and the
  call's params),
- no deny rule under `jobSave` or its groups (`admin`, `creator`) matches any of its
  documents, each called as for a jobSave of that document alone: with "jobSave" and params
  `(doc, {"cancelRepeats": ..., "jobId": <that document's jobIds entry, or None>})`,
- and either an allow rule under `jobSaveMany` matches the batch, or the batch holds at least
  one document and every document is allowed as such a jobSave (every document of an empty
  batch is allowed vacuously, even to a user no rule names).

The groups' rules are consulted per document only, with jobSave's params, which is what a
rule written for jobSave expects. A call whose documents cannot be listed with their options
(documents not a list, options not a dict, jobIds not one entry per document) is refused:
its documents cannot be checked one by one, and the method would refuse it anyway.

Rules see parameters the method layer has already parsed (wire.py): each has the method's
shape, so a rule may index them as its method's parameters. A rule that raises anyway (or
whose answer has no truth value) refuses the call: the error is logged once, at ERROR on the
"jobcollection" logger, and the caller gets PermissionDenied, never the rule's exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from ..model.constants import METHOD_PERMISSIONS
from ..model.errors import InvalidArgument, InvalidArgumentType

logger = logging.getLogger("jobcollection")

RuleFunction = Callable[[Any, str, tuple[Any, ...]], bool]
Rule = RuleFunction | Collection[Any]


class _RuleFailed(Exception):
    """A rule raised (logged where it did): the call is refused."""


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
        """Whether the rules let this user make this call (params as given, parsed by the
        method layer first); False if a rule raises (logged)."""
        try:
            if method == "jobSaveMany":
                return self._permits_save_many(user_id, params)
            return self._permits(user_id, method, params)
        except _RuleFailed:
            return False

    def is_admin(self, user_id: Any, method: str, params: tuple[Any, ...]) -> bool:
        """Whether an allow rule under the `admin` group matches this call (an admin may
        report on runs other users claimed); False if a rule raises (logged)."""
        try:
            return _matches(self._allow, ("admin",), user_id, method, params)
        except _RuleFailed:
            return False

    def _permits(self, user_id: Any, method: str, params: tuple[Any, ...]) -> bool:
        """No deny rule and some allow rule match, under the method's name or its groups."""
        names = METHOD_PERMISSIONS[method]
        return not _matches(self._deny, names, user_id, method, params) and _matches(
            self._allow, names, user_id, method, params
        )

    def _permits_save_many(self, user_id: Any, params: tuple[Any, ...]) -> bool:
        """The jobSaveMany rule of the module docstring."""
        saves = _saves(params)
        if saves is None:
            return False
        batch = ("jobSaveMany",)
        if _matches(self._deny, batch, user_id, "jobSaveMany", params):
            return False
        each = METHOD_PERMISSIONS["jobSave"]
        if any(_matches(self._deny, each, user_id, "jobSave", save) for save in saves):
            return False
        return _matches(self._allow, batch, user_id, "jobSaveMany", params) or (
            bool(saves)
            and all(_matches(self._allow, each, user_id, "jobSave", save) for save in saves)
        )


def _matches(
    table: dict[str, list[RuleFunction]],
    names: tuple[str, ...],
    user_id: Any,
    method: str,
    params: tuple[Any, ...],
) -> bool:
    """Whether a rule of the table under one of these names matches the call (_RuleFailed
    if one raises, logged)."""
    for name in names:
        for rule in table.get(name, ()):
            try:
                matched = bool(rule(user_id, method, params))
            except Exception:
                logger.exception(
                    "the %s rule %r raised for %s by %r; the call is refused",
                    name,
                    rule,
                    method,
                    user_id,
                    extra={"method": method, "user_id": user_id},
                )
                raise _RuleFailed from None
            if matched:
                return True
    return False


def _saves(params: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
    """The params of a jobSave of each document of a jobSaveMany call, from its raw params;
    None when they cannot be listed (the call is malformed and will be refused)."""
    if not params or not isinstance(params[0], list | tuple):
        return None
    docs = list(params[0])
    options = params[1] if len(params) > 1 and params[1] is not None else {}
    if not isinstance(options, dict):
        return None
    job_ids = options.get("jobIds")
    if job_ids is None:
        job_ids = [None] * len(docs)
    elif not isinstance(job_ids, list | tuple) or len(job_ids) != len(docs):
        return None
    cancel_repeats = options.get("cancelRepeats", False)
    return [
        (doc, {"cancelRepeats": cancel_repeats, "jobId": job_id})
        for doc, job_id in zip(docs, job_ids, strict=True)
    ]
