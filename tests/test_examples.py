"""The examples run as a user would run them, and print what their headers promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(path: Path, *args: str) -> str:
    """Run a script on the in-memory backend as a user would; its output."""
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    done = subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart_runs_a_queue_with_a_retry_a_dependency_and_cron_repeats() -> None:
    out = run_example(EXAMPLES / "quickstart.py")
    assert "flaky    run 1, attempt 1 failed; retrying in 30 s" in out
    assert "flaky    run 1, attempt 2 done" in out
    assert "report   run 1, attempt 1 done" in out
    assert out.index("flaky    run 1, attempt 2 done") < out.index("report   run 1, attempt 1")
    for stamp, run in (("09:15:00", 1), ("09:30:00", 2), ("09:45:00", 3), ("10:00:00", 4)):
        assert f"{stamp}  cleanup  run {run}, attempt 1 done" in out
    assert "cleanup ran 4 times" in out
    assert "flaky's failure: 'the mail server did not answer'" in out  # a worker that raised
    assert "report's result: {'ok': True, 'at': '09:05:00'}" in out  # a worker's return value


def test_benchmark_harness_runs_and_reports_commands_per_job() -> None:
    out = run_example(EXAMPLES.parent / "benchmarks" / "run.py", "--quick")
    assert "save_jobs() batched" in out
    assert "naive insert_one" in out
    assert "commands/job <= 0.2 at payload or prefetch >= 100" in out


def test_remote_worker_example_works_over_http() -> None:
    out = run_example(EXAMPLES / "remote_worker.py", "--demo")
    assert "serving the remote API on http://127.0.0.1:" in out
    for n in (1, 2, 3):
        assert f"sent welcome email to user{n}@example.com" in out
        assert f"user{n}@example.com: completed, result {{'status': 'sent'}}" in out
    assert "HTTP requests" in out


def test_remote_benchmark_runs_and_reports_requests_per_job() -> None:
    out = run_example(EXAMPLES.parent / "benchmarks" / "remote.py", "--quick")
    assert "HTTP requests/job" in out
    assert "remote/local throughput:" in out
    requests = float(out.split("HTTP requests/job ")[1].split()[0])
    assert 0 < requests <= 0.05  # a claim per 100 jobs and a request per payload's reports
