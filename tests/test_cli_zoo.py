"""``mnistzoo list`` and ``mnistzoo show``, and the specs and starter pack shipping inside the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from cli_helpers import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[1]
KEYS = {"id", "version", "study", "dataset", "params_total", "params_trainable", "params_non_trainable",
        "macs", "reference", "available"}


def test_list_json_has_37_models_with_counts() -> None:
    proc = run_cli("list", "--json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert len(records) == 37
    for r in records:
        assert set(r) == KEYS
        assert set(r["reference"]) == {"test_accuracy", "test_loss", "train_accuracy"}
        assert r["params_total"] == r["params_trainable"] + r["params_non_trainable"]
    by_id = {r["id"]: r for r in records}
    assert by_id["mlp5_dropout_bn"]["params_total"] == 4_401_802
    assert by_id["softmax_sgd"]["available"] == "starter pack" and by_id["cnn7_k5_reg"]["available"] is None
    assert by_id["fashion_mlp2"]["reference"]["train_accuracy"] is None


def test_list_filters_and_table() -> None:
    proc = run_cli("list", "cnn7*")
    assert proc.returncode == 0 and "cnn7_k3_reg" in proc.stdout and "cnn7_k5_reg" in proc.stdout
    assert "cnn5_k3" not in proc.stdout
    assert [r["id"] for r in json.loads(run_cli("list", "--study", "fashion", "--json").stdout)] == [
        "fashion_mlp2", "fashion_mlp3_dropout", "fashion_mlp2_bn", "fashion_mlp2_bn_dropout"]


def test_show_json() -> None:
    proc = run_cli("show", "cnn5_k5_reg_narrow@1", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["provenance"]["variable"] == "m34" and "five convs" in shown["notes"]
    assert shown["recipe"]["epochs"] == 25 and shown["params_total"] == 168_490
    assert shown["layers"][-1]["name"] == "probabilities" and shown["layers"][-1]["params"] == 650


def test_errors() -> None:
    assert_one_line_error(run_cli("show", "cnn3_k7"), 2, "unknown model 'cnn3_k7'", "cnn3_k")
    assert_one_line_error(run_cli("show", "mlp2@3"), 2, "no version 3", "mlp2@1")
    assert_one_line_error(run_cli("list", "--study", "deep"), 2, "unknown study 'deep'", "depth")
    assert_one_line_error(run_cli("list", "resnet*"), 2, "no model matches 'resnet*'")


def test_wheel_ships_specs_and_starter_pack(tmp_path: Path) -> None:
    """Build the wheel, install it into a fresh venv (dependencies borrowed); from there, with no zoo home,
    list the zoo and classify a digit with a starter model."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("mnistzoo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"mnistzoo/zoo_specs/{s}.toml" for s in ("depth", "cnn", "activations", "fashion", "init")} <= set(names)
    assert {"mnistzoo/starter/manifest.json", "mnistzoo/starter/mlp3_dropout_bn/v1/seed0/model.onnx"} <= set(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "tensorflow").is_dir())
    (site / "borrowed_deps.pth").write_text(deps + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    one = np.zeros((28, 28), np.uint8)
    one[4:24, 13:15] = 255  # a vertical stroke: a "1"
    np.save(tmp_path / "one.npy", one)
    code = ("import mnistzoo, numpy, sys; print(mnistzoo.__file__); "
            "from mnistzoo import load_pretrained; print(load_pretrained('mlp3_dropout_bn').predict("
            "numpy.load('one.npy'))[0]); "
            "from mnistzoo.cli import main; sys.argv=['mnistzoo','list','--json']; main()")
    env = {**os.environ, "MNISTZOO_HOME": str(tmp_path / "no_home")}
    env.pop("MNISTZOO_HUB", None)
    proc = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    location, label, listing = proc.stdout.split("\n", 2)
    assert location.startswith(str(venv))
    assert label == "1"
    assert len(json.loads(listing)) == 37
    assert not (tmp_path / "no_home").exists()
