"""The README's two commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)[:2]


def test_readme_starts_with_the_quickstart_and_the_test_command() -> None:
    quickstart, tests = readme_commands()
    assert quickstart.endswith("python examples/quickstart.py")
    assert tests.endswith("python -m pytest")
    assert quickstart.startswith("python3.11 -m venv .venv")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, tests = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines
