"""Shared fixtures: an isolated zoo home per test; a shared one holding MNIST; small trained and exported runs."""

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


@pytest.fixture(scope="session")
def runs(mnist_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory with an MLP and a CNN trained for one epoch on a slice of real MNIST."""
    from mnistzoo.train import train

    out = tmp_path_factory.mktemp("runs")
    with using_home(mnist_home):
        train("mlp3_dropout_bn", epochs=1, limit=3000, out=out)
        train("cnn3_k3", epochs=1, limit=1500, out=out)
    return out


@pytest.fixture(scope="session")
def exported(runs: Path, mnist_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlp3_dropout_bn exported at opsets 17 and 13 with int8, into a separate output directory."""
    from mnistzoo.export import export

    out = tmp_path_factory.mktemp("exported")
    with using_home(mnist_home):
        export("mlp3_dropout_bn", opsets=[17, 13], runs=runs, out=out, quantize="int8")
    return out / "mlp3_dropout_bn@1"
