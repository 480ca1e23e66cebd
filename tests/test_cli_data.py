"""``mnistzoo data``: errors as one line with exit code 2, and the JSON of ``data info``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cli_helpers import assert_one_line_error, run_cli
from synth import tiny_arrays


def test_unknown_dataset() -> None:
    assert_one_line_error(run_cli("data", "fetch", "mnsit"), 2, "unknown dataset 'mnsit'", "did you mean 'mnist'")


def test_from_missing_path() -> None:
    assert_one_line_error(run_cli("data", "fetch", "mnist", "--from", "/no/such/dir"), 2,
                          "/no/such/dir: no such file or directory")


def test_from_wrong_data_names_the_hash(tmp_path: Path) -> None:
    fake = tmp_path / "fake.npz"
    np.savez(fake, **tiny_arrays())
    assert_one_line_error(run_cli("data", "fetch", "mnist", "--from", str(fake)), 2,
                          "x_train is uint8 (6, 28, 28), expected uint8 (60000, 28, 28)")


def test_from_corrupt_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x1f\x8b not really")
    assert_one_line_error(run_cli("data", "fetch", "mnist", "--from", str(bad)), 2, "not an npz")


def test_from_needs_a_single_dataset(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("data", "fetch", "all", "--from", str(tmp_path)), 2, "--from needs one dataset")


def test_unwritable_cache(zoo_home: Path, monkeypatch) -> None:
    zoo_home.parent.mkdir(exist_ok=True)
    zoo_home.write_text("a file, not a directory")
    assert_one_line_error(run_cli("data", "fetch", "mnist"), 2, "not writable", "MNISTZOO_HOME")


def test_info_json_on_empty_cache() -> None:
    proc = run_cli("data", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [r["name"] for r in records] == ["mnist", "fashion_mnist"]
    for r in records:
        assert {"name", "cached", "verified", "source", "path", "shapes", "class_counts"} <= r.keys()
        assert r["cached"] is False and r["verified"] is False
