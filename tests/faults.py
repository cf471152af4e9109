"""A fault-injecting wrapper around a Motor-style collection, for reliability tests.

`FaultyCollection(inner)` can be given to `JobCollection` as its collection. Each wrapper has
its own `Faults` plan, so wrapping one shared collection once per JobCollection models
several processes, each with its own connection, any of which can be cut off:

    faults.fail_before("update_many")     # raise before the write reaches the database
    faults.fail_after("bulk_write")       # apply the write, then lose the reply
    gate = faults.delay("bulk_write")     # hold the call until gate.release()
    faults.cut_off() / faults.restore()   # every call raises, reads included

Injected errors are `pymongo.errors.AutoReconnect`, what a dropped connection raises. A rule
applies to the next `times` calls of an operation whose arguments satisfy `when`. Nothing
here sleeps: a delay waits on an asyncio.Event the test releases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import AutoReconnect

WRITES = frozenset(
    {
        "insert_one",
        "insert_many",
        "update_one",
        "update_many",
        "find_one_and_update",
        "bulk_write",
        "delete_many",
    }
)
READS = frozenset({"find", "find_one", "command"})

Predicate = Callable[[str, tuple[Any, ...]], bool]


class Gate:
    """Holds a delayed call: `reached` is set when the call arrives, `release()` lets it on."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._open = asyncio.Event()

    def release(self) -> None:
        self._open.set()

    async def wait_reached(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.reached.wait(), timeout)

    async def pass_through(self) -> None:
        self.reached.set()
        await self._open.wait()


@dataclass
class Rule:
    kind: str  # "before" | "after" | "delay"
    ops: frozenset[str]
    times: int
    when: Predicate | None = None
    gate: Gate | None = None
    fired: int = 0

    def matches(self, op: str, args: tuple[Any, ...]) -> bool:
        if self.times <= 0 or op not in self.ops:
            return False
        return self.when is None or self.when(op, args)


@dataclass
class Faults:
    """The faults planned for one connection, and a record of the calls it carried."""

    rules: list[Rule] = field(default_factory=list)
    cut: bool = False
    calls: list[str] = field(default_factory=list)

    def _add(
        self,
        kind: str,
        op: str | tuple[str, ...],
        times: int,
        when: Predicate | None,
        gate: Gate | None = None,
    ) -> Rule:
        ops = frozenset(WRITES if op == "write" else (op,) if isinstance(op, str) else op)
        unknown = ops - WRITES - READS
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}")
        rule = Rule(kind, ops, times, when, gate)
        self.rules.append(rule)
        return rule

    def fail_before(
        self, op: str | tuple[str, ...] = "write", times: int = 1, when: Predicate | None = None
    ) -> Rule:
        """The next matching call raises AutoReconnect without reaching the database."""
        return self._add("before", op, times, when)

    def fail_after(
        self, op: str | tuple[str, ...] = "write", times: int = 1, when: Predicate | None = None
    ) -> Rule:
        """The next matching call is applied, then raises AutoReconnect (the reply was lost)."""
        return self._add("after", op, times, when)

    def delay(
        self, op: str | tuple[str, ...] = "write", times: int = 1, when: Predicate | None = None
    ) -> Gate:
        """The next matching call waits until the returned gate is released."""
        gate = Gate()
        self._add("delay", op, times, when, gate)
        return gate

    def cut_off(self) -> None:
        """Every call raises AutoReconnect until restore()."""
        self.cut = True

    def restore(self) -> None:
        self.cut = False

    def clear(self) -> None:
        """Drop every planned fault and reconnect."""
        self.rules.clear()
        self.cut = False

    @property
    def pending(self) -> int:
        """Planned faults not yet fired."""
        return sum(rule.times for rule in self.rules)

    async def run(self, op: str, args: tuple[Any, ...], call: Callable[[], Awaitable[Any]]) -> Any:
        self.calls.append(op)
        if self.cut:
            raise AutoReconnect(f"{op}: connection cut off (injected)")
        rule = next((r for r in self.rules if r.matches(op, args)), None)
        if rule is not None:
            rule.times -= 1
            rule.fired += 1
            if rule.kind == "delay":
                assert rule.gate is not None
                await rule.gate.pass_through()
            elif rule.kind == "before":
                raise AutoReconnect(f"{op}: connection lost before the request (injected)")
        result = await call()
        if rule is not None and rule.kind == "after":
            raise AutoReconnect(f"{op}: connection lost before the reply (injected)")
        if self.cut:  # cut off while the call was in flight: its reply is lost
            raise AutoReconnect(f"{op}: connection cut off (injected)")
        return result


class FaultyCursor:
    """A cursor whose to_list goes through the fault plan."""

    def __init__(self, cursor: Any, faults: Faults, args: tuple[Any, ...]) -> None:
        self._cursor = cursor
        self._faults = faults
        self._args = args

    def sort(self, *args: Any, **kwargs: Any) -> FaultyCursor:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, *args: Any, **kwargs: Any) -> FaultyCursor:
        self._cursor = self._cursor.limit(*args, **kwargs)
        return self

    async def to_list(self, length: int | None = None) -> Any:
        return await self._faults.run(
            "find", self._args, lambda: self._cursor.to_list(length=length)
        )


class FaultyDatabase:
    """The database of a FaultyCollection: `command` (server time) obeys the same plan."""

    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults
        self.name = inner.name

    async def command(self, *args: Any, **kwargs: Any) -> Any:
        return await self._faults.run("command", args, lambda: self._inner.command(*args, **kwargs))

    def get_collection(self, name: str, **kwargs: Any) -> FaultyCollection:
        """A sibling collection on the same connection (the server clock's, through mongos)."""
        return FaultyCollection(self._inner.get_collection(name, **kwargs), self._faults)


class FaultyCollection:
    """A Motor-style collection that injects the faults of its plan into every call."""

    def __init__(self, inner: Any, faults: Faults | None = None) -> None:
        self._inner = inner
        self.faults = faults if faults is not None else Faults()

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def codec_options(self) -> Any:
        return self._inner.codec_options

    @property
    def database(self) -> FaultyDatabase:
        return FaultyDatabase(self._inner.database, self.faults)

    @property
    def inner(self) -> Any:
        """The wrapped collection, reachable without faults (for assertions)."""
        return self._inner

    def with_options(self, **kwargs: Any) -> FaultyCollection:
        return FaultyCollection(self._inner.with_options(**kwargs), self.faults)

    def find(self, *args: Any, **kwargs: Any) -> FaultyCursor:
        return FaultyCursor(self._inner.find(*args, **kwargs), self.faults, args)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "find_one", args, lambda: self._inner.find_one(*args, **kwargs)
        )

    async def insert_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "insert_one", args, lambda: self._inner.insert_one(*args, **kwargs)
        )

    async def insert_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "insert_many", args, lambda: self._inner.insert_many(*args, **kwargs)
        )

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "update_one", args, lambda: self._inner.update_one(*args, **kwargs)
        )

    async def update_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "update_many", args, lambda: self._inner.update_many(*args, **kwargs)
        )

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "find_one_and_update", args, lambda: self._inner.find_one_and_update(*args, **kwargs)
        )

    async def bulk_write(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "bulk_write", args, lambda: self._inner.bulk_write(*args, **kwargs)
        )

    async def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self.faults.run(
            "delete_many", args, lambda: self._inner.delete_many(*args, **kwargs)
        )

    async def create_index(self, *args: Any, **kwargs: Any) -> Any:
        return await self._inner.create_index(*args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> Any:
        return await self._inner.count_documents(*args, **kwargs)
