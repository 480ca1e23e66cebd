"""Run the installed ``mnistzoo`` command the way a user does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MNISTZOO = Path(sys.executable).with_name("mnistzoo")


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``mnistzoo ARGS`` in a subprocess and capture its output."""
    return subprocess.run([str(MNISTZOO), *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """The command failed with ``code``, one line on stderr, no traceback, naming each fragment."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
