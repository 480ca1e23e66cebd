"""The inference-only install as a user gets it: build the wheel, install it with no extras into a fresh
virtual environment, and there predict, evaluate and list, checking the answers. CI runs this.

    python3 scripts/check_light_install.py

Exits non-zero on the first wrong answer. Needs the package index (for onnxruntime and friends) and the
offline MNIST route the data layer already uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "matplotlib")

INSIDE = """
import importlib.util, json, sys
from pathlib import Path
from PIL import Image
from mnistzoo import data, load_pretrained, pretrained

missing = [m for m in {heavy!r} if importlib.util.find_spec(m) is None]
assert missing == list({heavy!r}), f"the plain install pulled in {{set({heavy!r}) - set(missing)}}"
ds = data.load("mnist")
Image.fromarray(ds.x_test[0]).save("digit.png")
clf = load_pretrained("mlp3_dropout_bn")
assert clf.source == "starter pack" and clf.predict("digit.png").tolist() == [int(ds.y_test[0])]
accuracy = float((clf.predict(ds.x_test) == ds.y_test).mean())
assert abs(accuracy - clf.card["keras_test_accuracy"]) < 0.002, accuracy
assert not [m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules]
print(json.dumps({{"starter": str(pretrained.STARTER), "accuracy": accuracy}}))
"""


def run(*cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"light install: `{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mnistzoo-light-") as tmp:
        work = Path(tmp)
        run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT), cwd=work)
        venv.create(work / "venv", with_pip=True)
        bin_dir = work / "venv" / "bin"
        run(str(bin_dir / "pip"), "install", "-q", *map(str, (work / "dist").glob("mnistzoo-*.whl")), cwd=work)
        os.environ["MNISTZOO_HOME"] = str(work / "home")
        facts = json.loads(run(str(bin_dir / "python"), "-c", INSIDE.format(heavy=HEAVY), cwd=work).stdout)
        print(f"light install: load_pretrained + predict OK, starter mlp3_dropout_bn accuracy {facts['accuracy']:.4f}")

        onnx_file = Path(facts["starter"]) / "cnn3_k5" / "v1" / "model.onnx"
        run(str(bin_dir / "mnistzoo"), "eval", str(onnx_file), "--batch-sizes", "1,32", "--runs", "50", "--json",
            str(work / "eval.json"), cwd=work)
        record = json.loads((work / "eval.json").read_text())
        card = json.loads((onnx_file.parent / "card.json").read_text())
        assert abs(record["accuracy"] - card["results"]["test_accuracy"]) < 0.002, record["accuracy"]
        assert [row["batch_size"] for row in record["latency"]] == [1, 32] and record["parity"] is None
        print(f"light install: mnistzoo eval OK, cnn3_k5 accuracy {record['accuracy']:.4f}, "
              f"batch-1 p50 {record['latency'][0]['p50_ms']:.3f} ms")

        listing = json.loads(run(str(bin_dir / "mnistzoo"), "list", "--json", cwd=work).stdout)
        assert len(listing) == 37 and next(r for r in listing if r["id"] == "mlp2")["params_total"] == 1_333_770
        print("light install: mnistzoo list OK, 37 models")

        proc = run(str(bin_dir / "mnistzoo"), "train", "mlp2", cwd=work, check=False)
        assert proc.returncode == 2 and "pip install 'mnistzoo[train]'" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        print("light install: mnistzoo train names the training extra")


if __name__ == "__main__":
    main()
