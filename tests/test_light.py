"""Inference without TensorFlow: the paths that only run ONNX files never import TensorFlow, Keras or tf2onnx."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_trust import STARTER_ONNX

HEAVY = ("tensorflow", "keras", "tf2onnx")
RESULTS = Path(__file__).resolve().parent.parent / "results"
CLI = """
import sys
from mnistzoo.cli import main
sys.argv = ["mnistzoo", *{args!r}]
try:
    main()
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""


def run_light(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, then print which heavy modules it imported."""
    check = f"\nimport sys\nprint('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code) + check], capture_output=True, text=True,
                          timeout=300)


def _digit_png(home: Path, tmp_path: Path) -> Path:
    from PIL import Image

    from mnistzoo import data

    Image.fromarray(data.load("mnist").x_test[0]).save(tmp_path / "seven.png")
    return tmp_path / "seven.png"


@pytest.mark.parametrize("case", ["load_pretrained", "predict", "eval", "list", "show", "data", "publish_pull"])
def test_inference_paths_never_import_tensorflow(case: str, home: Path, tmp_path: Path) -> None:
    png = _digit_png(home, tmp_path)
    hub = tmp_path / "hub"
    code = {
        "load_pretrained": f"""
            from mnistzoo import load_pretrained
            clf = load_pretrained("mlp3_dropout_bn")
            assert clf.predict({str(png)!r}).tolist() == [7]
            """,
        "predict": CLI.format(args=["predict", "mlp3_dropout_bn", str(png)]),
        "eval": CLI.format(args=["eval", str(STARTER_ONNX), "--batch-sizes", "1", "--runs", "5"]),
        "list": CLI.format(args=["list"]),
        "show": CLI.format(args=["show", "cnn5_k5_reg"]),
        "data": CLI.format(args=["data", "info"]),
        "publish_pull": textwrap.dedent(f"""
            import json, shutil
            from pathlib import Path
            from mnistzoo import pretrained
            from mnistzoo._io import sha256_file
            run = Path({str(tmp_path / "runs" / "softmax_sgd@1")!r})  # an exported run, from the starter pack
            shutil.copytree(pretrained.STARTER / "softmax_sgd" / "v1" / "seed0", run)
            record = json.loads(Path({str(RESULTS / "softmax_sgd" / "seed0" / "export.json")!r}).read_text())
            record["opsets"]["17"]["sha256"] = sha256_file(run / "model.onnx")
            (run / "export.json").write_text(json.dumps(record))
            """) + CLI.format(args=["publish", str(hub), "--runs", str(tmp_path / "runs")])
            + CLI.format(args=["pull", "softmax_sgd", "--hub", str(hub)]),
    }[case]
    proc = run_light(code)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]


def test_without_the_training_extra_heavy_commands_name_it(tmp_path: Path, runs: Path, exported: Path,
                                                            home: Path) -> None:
    """With TensorFlow made unimportable, training is one line naming the extra, and inference still works."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "onnx", "matplotlib"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        """))
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    proc = subprocess.run([sys.executable, "-m", "mnistzoo", "train", "mlp2"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'mnistzoo[train]'" in lines[0]
    proc = subprocess.run([sys.executable, "-m", "mnistzoo", "show", "mlp2"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and "1,333,770" in proc.stdout, proc.stderr
    beside = tmp_path / "model"  # an exported file with its matching checkpoint beside it, as in a hub cache
    beside.mkdir()
    shutil.copy(exported / "model.onnx", beside / "model.onnx")
    shutil.copy(runs / "mlp3_dropout_bn@1" / "seed0" / "model.keras", beside / "model.keras")
    evaluate = [sys.executable, "-m", "mnistzoo", "eval", str(beside / "model.onnx"), "--batch-sizes", "1", "--runs",
                "3", "--json", str(tmp_path / "eval.json")]
    proc = subprocess.run(evaluate, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["parity"] is None  # no Keras here: no parity
    proc = subprocess.run([*evaluate, "--compare-keras"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "pip install 'mnistzoo[train]'" in proc.stderr, proc.stderr


def test_the_wheel_declares_every_package_folder() -> None:
    """pyproject lists the starter pack's folders as packages (so they ship without setuptools warnings)."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    declared = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.relative_to(root).parts) for p in (root / "mnistzoo").rglob("*")
               if p.is_dir() and p.name != "__pycache__"}
    assert declared == folders | {"mnistzoo", "mnistzoo.zoo_specs"}
