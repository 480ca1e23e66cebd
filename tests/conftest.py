"""Shared fixtures: every test gets an isolated zoo home; `home` gives one holding verified MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest

from homes import using_home


@pytest.fixture(autouse=True)
def zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty MNISTZOO_HOME."""
    home = tmp_path / "home"
    monkeypatch.setenv("MNISTZOO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def mnist_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo home holding verified MNIST, fetched once per session (offline route in CI)."""
    from mnistzoo import data

    with using_home(tmp_path_factory.mktemp("mnist_home")) as home:
        data.load("mnist")
    return home


@pytest.fixture
def home(mnist_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's MNISTZOO_HOME is the shared one holding MNIST."""
    monkeypatch.setenv("MNISTZOO_HOME", str(mnist_home))
    return mnist_home
