"""The inference-only install as a user gets it: build the wheel, install it with no extras into a fresh
virtual environment, and there predict, evaluate and list, checking the answers. CI runs this (from the test
suite, with the weights wheels of a rebuilt published zoo).

    python3 scripts/check_light_install.py [--weights DIR]

With ``--weights DIR`` the weights wheels in DIR (``mnistzoo package``) are installed too, and there every
model they hold is loaded, checked against its test vectors and scored on the real test set against its card;
then a corrupted installed file must be refused with one line naming it and the fix.

Exits non-zero on the first wrong answer. Needs the package index (for onnxruntime and friends) and the
offline MNIST route the data layer already uses.
"""

from __future__ import annotations

import argparse
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


WEIGHTS_INSIDE = """
import json, sys
import numpy as np
from mnistzoo import data, load_pretrained
from mnistzoo.hub import load_manifest
from mnistzoo.packages import installed



def float_tensor(blob):
    # A float32 onnx.TensorProto (dims, raw_data) read without the onnx package, which a plain install lacks:
    # field 1 dims (varints), field 9 raw_data, field 2 data_type and 8 name skipped.
    dims, raw, i = [], b"", 0
    def varint():
        nonlocal i
        value = shift = 0
        while True:
            byte = blob[i]; i += 1
            value |= (byte & 0x7F) << shift; shift += 7
            if byte < 0x80:
                return value
    while i < len(blob):
        field, wire = divmod(varint(), 8)
        if wire == 0:
            value = varint()
            dims += [value] if field == 1 else []
        elif wire == 2:  # name, or raw_data (field 9)
            size = varint(); raw = blob[i:i + size] if field == 9 else raw; i += size
        else:
            raise ValueError(f"unexpected wire type {{wire}}")
    return np.frombuffer(raw, np.float32).reshape(dims)


checked = []
for dist, folder in installed():
    entries = load_manifest(folder)
    for e in entries:
        if e.kind not in ("onnx", "int8"):
            continue
        clf = load_pretrained(e.name, int8=e.kind == "int8")
        assert clf.source == "weights package" and clf.path == folder / e.file, (clf.source, clf.path)
        ds = data.load(clf.card["dataset"])
        accuracy = float((clf.predict(ds.x_test) == ds.y_test).mean())
        keras = clf.card["keras_test_accuracy"]
        assert abs(accuracy - keras) <= (0.002 if e.kind == "onnx" else 0.01), (e.name, e.kind, accuracy, keras)
        if e.kind == "onnx":
            vectors = {{k.kind: folder / k.file for k in entries if k.name == e.name and k.kind.startswith("test_")}}
            x, y = (float_tensor(vectors[k].read_bytes()) for k in ("test_input", "test_output"))
            np.testing.assert_allclose(clf.predict_proba(x), y, atol=1e-4)
        checked.append([e.name, e.kind, accuracy])
assert not [m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules]
print(json.dumps(checked))
"""


def run(*cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"light install: `{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="a folder of weights wheels to install and check too")
    args = parser.parse_args()
    wheels = sorted(args.weights.glob("*.whl")) if args.weights else []
    if args.weights and not wheels:
        sys.exit(f"light install: no wheels in {args.weights}; make them with `mnistzoo package`")
    with tempfile.TemporaryDirectory(prefix="mnistzoo-light-") as tmp:
        work = Path(tmp)
        run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT), cwd=work)
        venv.create(work / "venv", with_pip=True)
        bin_dir = work / "venv" / "bin"
        run(str(bin_dir / "pip"), "install", "-q", *map(str, (work / "dist").glob("mnistzoo-*.whl")), cwd=work)
        os.environ["MNISTZOO_HOME"] = str(work / "home")
        facts = json.loads(run(str(bin_dir / "python"), "-c", INSIDE.format(heavy=HEAVY), cwd=work).stdout)
        print(f"light install: load_pretrained + predict OK, starter mlp3_dropout_bn accuracy {facts['accuracy']:.4f}")

        onnx_file = Path(facts["starter"]) / "cnn3_k5" / "v1" / "seed0" / "model.onnx"
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
        if wheels:
            check_weights(bin_dir, work, wheels)


def check_weights(bin_dir: Path, work: Path, wheels: list[Path]) -> None:
    """Installed beside the plain package, every model of the weights wheels loads (from them, before the starter
    pack), matches its test vectors and scores its card; a corrupted installed file is refused."""
    run(str(bin_dir / "pip"), "install", "-q", "--no-deps", *map(str, wheels), cwd=work)
    checked = json.loads(run(str(bin_dir / "python"), "-c", WEIGHTS_INSIDE.format(), cwd=work).stdout)
    assert checked, "the weights wheels hold no ONNX file"
    print(f"light install: weights wheels OK, {len(checked)} files loaded, vectors and accuracy checked: "
          + ", ".join(f"{name} {kind} {acc:.4f}" for name, kind, acc in checked))
    name, kind = checked[0][:2]
    where = run(str(bin_dir / "python"), "-c", f"from mnistzoo import load_pretrained; "
                f"print(load_pretrained({name!r}, int8={kind == 'int8'}).path)", cwd=work).stdout.strip()
    with open(where, "r+b") as fh:  # flip one byte of the installed file
        fh.seek(fh.seek(0, 2) // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    proc = run(str(bin_dir / "mnistzoo"), "predict", name, *(["--int8"] if kind == "int8" else []), "digit.png",
               cwd=work, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and where in lines[0] and "reinstall" in lines[0], proc.stderr
    print(f"light install: a corrupted installed file is refused: {lines[0]}")


if __name__ == "__main__":
    main()
