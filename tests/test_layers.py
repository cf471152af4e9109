"""The package's layers hold: every import in src/jobcollection (at the top of a module, inside a
function or under TYPE_CHECKING) goes to a lower layer or stays in its own package, so the
file list shows the layers and no import runs back up (docs/development.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "jobcollection"

LAYERS: dict[str, int] = {
    "model": 0,
    "rules": 1,
    "mongo": 1,
    "local": 2,
    "methods": 3,
    "api": 4,
    "monitoring": 1,
    "metrics": 5,
    "testing": 5,
    "remote": 5,
    "web": 6,
    "pytest_plugin": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 8,
}
"""Each top-level part of the package (a layer package or a public module) and its floor."""


def _part(module: str) -> str:
    """The top-level part of a dotted module name under jobcollection ('' for the package)."""
    return module.split(".", 1)[0] if module else "__init__"


def _module_of(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """What a module's source imports from jobcollection, as dotted names."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("jobcollection"):
                target = node.module.removeprefix("jobcollection").lstrip(".")
            else:
                continue
            names = [alias.name for alias in node.names]
            found.extend(f"{target}.{name}".lstrip(".") for name in names)
        elif isinstance(node, ast.Import):
            found.extend(
                a.name.removeprefix("jobcollection").lstrip(".")
                for a in node.names
                if a.name.startswith("jobcollection")
            )
    return found


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_part_of_the_package_has_a_floor() -> None:
    parts = {_part(_module_of(path)[0]) for path in _sources()}
    assert parts <= set(LAYERS), f"give these a floor in LAYERS: {sorted(parts - set(LAYERS))}"


def _upward(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of a module that go to its own floor in another part, or higher."""
    own = _part(module)
    return [
        target
        for target in _imports(source, module, is_package)
        if _part(target) != own
        and _part(target) in LAYERS
        and _part(target) != "__init__"
        and LAYERS[_part(target)] >= LAYERS[own]
    ]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_runs_back_up_a_layer(path: Path) -> None:
    module, is_package = _module_of(path)
    upward = _upward(path.read_text(), module, is_package)
    assert not upward, f"{module or '__init__'} (floor {LAYERS[_part(module)]}) imports {upward}"


def test_the_check_sees_imports_back_up_and_across() -> None:
    """What the test above refuses: relative and absolute imports, in functions too, of a
    higher layer or of a sibling on the same floor; what it allows: lower floors, its own."""
    source = """
from ..local.core import Core
from ..mongo import store
from . import document
def later() -> None:
    import jobcollection.api.job
    from jobcollection.rules.transitions import claim
"""
    assert _upward(source, "rules.example") == ["local.core.Core", "mongo.store", "api.job"]
    assert _upward("from ..model.ops import Op\nfrom .core import Core", "local.claiming") == []
