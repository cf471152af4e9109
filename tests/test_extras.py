"""The extras (pyproject's optional dependencies) and what the commands say about them; that
each extra alone runs its commands in a fresh venv is scripts/check-extras's (.ci/run runs it).
Here, quickly: every extra a message can name exists, the old names still install, and each
side of the remote API imports without the other side's packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from jobcollection.cli.errors import COMMAND_EXTRAS, EXTRAS, EXTRAS_NEEDED

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def extras() -> dict[str, list[str]]:
    found: dict[str, list[str]] = tomllib.loads(PYPROJECT.read_text())["project"][
        "optional-dependencies"
    ]
    return found


def test_every_extra_a_message_names_exists_and_old_names_still_install() -> None:
    named = set(EXTRAS.values())
    for overrides in COMMAND_EXTRAS.values():
        named |= set(overrides.values())
    assert named <= set(extras())
    # what requirements files name already: kept, `remote` as server + client
    assert {"motor", "memory", "metrics", "otel", "remote", "web"} <= set(extras())
    assert extras()["remote"] == ["jobcollection[server,client]"]
    [everything] = extras()["all"]
    assert set(everything.removeprefix("jobcollection[").removesuffix("]").split(",")) == {
        "server",
        "client",
        "web",
        "memory",
        "metrics",
        "otel",
        "motor",
    }


@pytest.mark.parametrize(
    ("name", "blocked"),
    [
        ("RemoteJobCollection", ("starlette", "uvicorn", "websockets")),
        ("create_app", ("httpx",)),
        ("TokenAuth", ("httpx",)),
    ],
)
def test_each_side_of_the_remote_api_imports_alone(name: str, blocked: tuple[str, ...]) -> None:
    script = (
        f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); "
        f"from jobcollection.remote import {name}; print({name}.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == name


def test_help_says_which_extra_each_command_needs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobcollection", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert EXTRAS_NEEDED in done.stdout
    for command in ("serve", "dashboard", "worker", "token"):
        assert f"\n  {command} " in EXTRAS_NEEDED
