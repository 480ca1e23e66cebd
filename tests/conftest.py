"""Shared fixtures: every test gets an isolated zoo home."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty MNISTZOO_HOME."""
    home = tmp_path / "home"
    monkeypatch.setenv("MNISTZOO_HOME", str(home))
    return home
