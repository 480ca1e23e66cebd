"""Trust: parity that tells a tie from a flip, runs that keep their settings, and a table of bad
invocations that each end in one clean line with the right exit code and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from cli_helpers import MNISTZOO, assert_one_line_error, run_cli
from mnistzoo.errors import InvalidInput

STARTER_ONNX = Path(__file__).resolve().parent.parent / "mnistzoo" / "starter" / "mlp3_dropout_bn" / "v1" / "seed0" / "model.onnx"


# ----------------------------------------------------------------------------- ties are not flips


def _zero_head_run(runs: Path, tmp_path: Path) -> Path:
    """A copy of the trained mlp3_dropout_bn run whose classifier head is zeroed: every class ties."""
    import keras

    from mnistzoo._io import sha256_file
    from mnistzoo.checkpoints import save_weights

    copy = tmp_path / "runs"
    shutil.copytree(runs / "mlp3_dropout_bn@1", copy / "mlp3_dropout_bn@1")
    run = copy / "mlp3_dropout_bn@1" / "seed0"
    model = keras.models.load_model(run / "model.keras")
    head = model.get_layer("probabilities")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    model.save(run / "model.keras")
    card = json.loads((run / "card.json").read_text())
    card["model_sha256"] = sha256_file(run / "model.keras")
    card["weights_sha256"] = save_weights(model, "mlp3_dropout_bn@1", run / "model.weights.h5")  # what export reads
    (run / "card.json").write_text(json.dumps(card))
    return copy


def test_export_and_eval_pass_a_model_whose_every_prediction_is_a_tie(runs: Path, home: Path,
                                                                      tmp_path: Path) -> None:
    from mnistzoo.evaluate import evaluate
    from mnistzoo.export import export

    result = export("mlp3_dropout_bn", runs=_zero_head_run(runs, tmp_path))
    parity = result.record["opsets"]["17"]
    assert result.passed and parity["flipped"] == 0 and parity["ties"] == 10_000
    assert parity["max_tie_margin"] <= parity["tie_margin"] == 2e-5
    record = evaluate(result.out_dir / "model.onnx", batch_sizes=[1], runs=3)
    assert record["parity"]["passed"] and record["parity"]["ties"] == 10_000 and record["parity"]["flipped"] == 0


# ----------------------------------------------------------------------------- runs keep their settings


def test_a_finished_run_is_not_handed_back_for_other_settings(runs: Path, home: Path) -> None:
    from mnistzoo.train import train

    same = train("mlp3_dropout_bn", epochs=1, limit=3000, out=runs)
    assert same.skipped and same.card["epochs_run"] == 1
    with pytest.raises(InvalidInput, match=r"finished run with other settings: asked for epochs 2 \(it has 1\)"):
        train("mlp3_dropout_bn", epochs=2, limit=3000, out=runs)
    with pytest.raises(InvalidInput, match=r"limit None \(it has 3000\).*--force"):
        train("mlp3_dropout_bn", epochs=1, out=runs)


def test_partial_runs_name_what_differs_and_what_is_missing(home: Path, tmp_path: Path) -> None:
    import random

    from mnistzoo.train import train

    def stop_after_first_epoch(row: dict) -> None:
        raise KeyboardInterrupt

    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    with pytest.raises(KeyboardInterrupt):
        train("softmax_sgd", epochs=2, limit=600, out=tmp_path, on_epoch=stop_after_first_epoch)
    assert (np.random.get_state()[1] == np_before).all() and random.getstate() == py_before
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()
    run = tmp_path / "softmax_sgd@1" / "seed0"
    with pytest.raises(InvalidInput, match=r"partial run with other settings: asked for epochs 3 \(it has 2\)"):
        train("softmax_sgd", epochs=3, limit=600, out=tmp_path)
    (run / "checkpoint.keras").rename(run / "kept.keras")
    with pytest.raises(InvalidInput, match="checkpoint.keras: missing beside its state.json"):
        train("softmax_sgd", epochs=2, limit=600, out=tmp_path)
    (run / "kept.keras").rename(run / "checkpoint.keras")
    (run / "state.json").write_text('{"config": [1, 2]')
    with pytest.raises(InvalidInput, match=r"state.json: unreadable or not JSON.*--restart"):
        train("softmax_sgd", epochs=2, limit=600, out=tmp_path)
    (run / "state.json").write_text('["a list"]')
    with pytest.raises(InvalidInput, match=r"state.json: expected a JSON object, found list.*--restart"):
        train("softmax_sgd", epochs=2, limit=600, out=tmp_path)


def test_each_version_keeps_its_own_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistzoo.zoo import models, specs
    from mnistzoo.zoo.registry import _MODELS, get_model

    root = Path(__file__).resolve().parent.parent / "zoo_specs"
    for toml in root.glob("*.toml"):
        shutil.copy(toml, tmp_path / toml.name)
    with (tmp_path / "depth.toml").open("a") as fh:
        fh.write('\n[models."mlp2@2"]\nversion = 2\nsection = "s"\nvariable = "v"\nreference = {}\n'
                 'recipe = { epochs = 3 }\n')
    monkeypatch.setattr(specs, "all_specs", lambda: specs.load_specs(tmp_path))
    v2 = type("Mlp2V2", (models.Mlp2,), {"version": 2})
    monkeypatch.setitem(_MODELS, "mlp2", {**_MODELS["mlp2"], 2: v2})
    assert get_model("mlp2@1").spec.recipe.epochs == 15
    assert get_model("mlp2@2").spec.recipe.epochs == 3 and get_model("mlp2").version == 2


# ----------------------------------------------------------------------------- files onnxruntime refuses


def _custom_op_model(path: Path) -> Path:
    """A file with the zoo's contract whose only node is an operator onnxruntime does not have."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Frobnicate", ["image"], ["probabilities"], domain="org.example")],
                              "custom", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 28, 28])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("org.example", 1)])
    model.metadata_props.extend(onnx.load(STARTER_ONNX).metadata_props)  # a real card: only the operator is wrong
    onnx.save(model, path)
    return path


def _newer_ir(path: Path) -> Path:
    proto = onnx.load(STARTER_ONNX)
    proto.ir_version = 99
    onnx.save(proto, path)
    return path


@pytest.mark.parametrize("make", [_custom_op_model, _newer_ir])
def test_files_onnxruntime_cannot_load_are_a_value_error(tmp_path: Path, make) -> None:
    from mnistzoo.pretrained import Classifier

    with pytest.raises(ValueError) as info:
        Classifier(make(tmp_path / "model.onnx"))
    assert "\n" not in str(info.value) and "model.onnx" in str(info.value)


# ----------------------------------------------------------------------------- the CLI's bad invocations


def _bomb(path: Path) -> Path:
    from PIL import Image

    Image.new("L", (7000, 7000)).save(path)
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths the bad invocations point at: an output directory that must stay unchanged, a file, odd names."""
    root = tmp_path_factory.mktemp("bad")
    (root / "out").mkdir()
    (root / "out" / "keep.txt").write_text("mine")
    (root / "afile").write_text("x")
    return {"out": str(root / "out"), "file": str(root / "afile"), "onnx": str(STARTER_ONNX),
            "custom": str(_custom_op_model(root / "custom.onnx")), "newer": str(_newer_ir(root / "newer.onnx")),
            "bomb": str(_bomb(root / "bomb.png")), "markup": str(root / "x[bold]y[/].onnx")}


BAD_INVOCATIONS = [
    (["show", "cnn[red]x[/]"], 2, "unknown model 'cnn[red]x[/]'"),
    (["show", "mlp2@١"], 2, "version after '@'"),
    (["show", "mlp2@"], 2, "version after '@'"),
    (["show", " mlp2"], 2, "ids are lower-case letters"),
    (["show", "mlp2@1@2"], 2, "version after '@'"),
    (["list", "--study", "typo[/]"], 2, "unknown study 'typo[/]'"),
    (["train", "mlp2", "--seed", "-1", "--out", "{out}"], 2, "--seed must be an integer from 0 to 4294967295"),
    (["train", "mlp2", "--seed", "4294967296", "--out", "{out}"], 2, "--seed"),
    (["train", "mlp2", "--epochs", "abc", "--out", "{out}"], 2, "Invalid value for '--epochs'"),
    (["train", "mlp2", "no[b]such", "--out", "{out}"], 2, "no[b]such"),
    (["train", "mlp2", "--out", "{file}"], 2, "is a file, not a directory"),
    (["eval", "{onnx}", "--seconds", "nan"], 2, "--seconds must be a finite number above 0"),
    (["eval", "{onnx}", "--seconds", "-1"], 2, "--seconds"),
    (["eval", "{onnx}", "--threads", "0"], 2, "--threads must be a positive integer"),
    (["eval", "{onnx}", "--runs", "0"], 2, "--runs must be a positive integer"),
    (["eval", "{onnx}", "--atol", "nan"], 2, "--atol"),
    (["eval", "{onnx}", "--batch-sizes", "1,٣"], 2, "--batch-sizes takes positive integers"),
    (["eval", "{onnx}", "--json", "{out}"], 2, "is a directory"),
    (["eval", "{onnx}", "--plots", "{file}"], 2, "is a file, not a directory"),
    (["eval", "{out}"], 2, "is a directory"),
    (["eval", "{markup}"], 2, "x[bold]y[/].onnx: no such file"),
    (["eval", "{custom}"], 2, "not a valid ONNX model that onnxruntime"),
    (["eval", "{newer}"], 2, "not a valid ONNX model"),
    (["export", "mlp2", "--atol", "nan"], 2, "--atol"),
    (["export", "mlp2", "--max-flips", "-1"], 2, "--max-flips"),
    (["predict", "mlp3_dropout_bn", "{out}"], 2, "is a directory"),
    (["predict", "mlp3_dropout_bn", "{bomb}"], 2, "larger than the"),
    (["report", "--runs", "results", "--out", "{file}"], 2, "is a file, not a directory"),
    (["data", "fetch", "mnist", "--from", "{file}"], 2, "check the file you gave with --from"),
]


@pytest.mark.parametrize(("args", "code", "fragment"), BAD_INVOCATIONS, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _, _)
                                                                            in enumerate(BAD_INVOCATIONS)])
def test_bad_invocation(bad: dict[str, str], args: list[str], code: int, fragment: str) -> None:
    before = sorted(os.listdir(bad["out"]))
    proc = run_cli(*[a.format(**bad) for a in args])
    assert_one_line_error(proc, code, fragment.format(**bad))
    assert sorted(os.listdir(bad["out"])) == before


def _sigint_as_in_a_terminal() -> None:
    """Let the child receive Ctrl-C as a user's terminal would.

    A shell that starts a job in the background makes it ignore SIGINT, and a CI runner may block it; children
    inherit both the disposition and the signal mask across exec.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_during_training_says_what_was_kept(home: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(MNISTZOO), "train", "softmax_sgd", "--epochs", "200", "--limit", "2000", "--out",
                             str(tmp_path), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.monotonic() + 240
    while not (tmp_path / "softmax_sgd@1" / "seed0" / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "last complete epoch" in lines[0] and "rerun the same command to resume" in lines[0]
    assert json.loads((tmp_path / "softmax_sgd@1" / "seed0" / "state.json").read_text())["history"]


def test_a_warning_for_people_is_one_plain_line(runs: Path, exported: Path, zoo_home: Path, tmp_path: Path) -> None:
    from PIL import Image

    run = zoo_home / "runs" / "mlp3_dropout_bn@1" / "seed0"
    shutil.copytree(runs / "mlp3_dropout_bn@1" / "seed0", run)
    for name in ("model.onnx", "export.json"):
        shutil.copy(exported / name, run / name)
    Image.new("L", (28, 28)).save(tmp_path / "blank.png")
    proc = run_cli("predict", "mlp3_dropout_bn", str(tmp_path / "blank.png"))
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: mlp3_dropout_bn@1 from zoo home was not trained")
    assert "UserWarning" not in proc.stderr


def test_a_report_that_fails_half_way_leaves_nothing(tmp_path: Path) -> None:
    results = Path(__file__).resolve().parent.parent / "results"
    broken = tmp_path / "broken"
    shutil.copytree(results / "mlp2", broken / "mlp2")
    record = json.loads((broken / "mlp2" / "seed0" / "eval.json").read_text())
    record["latency"] = [{"garbled": True}]  # the right JSON type: only the page's tables find it lacking
    (broken / "mlp2" / "seed0" / "eval.json").write_text(json.dumps(record))
    proc = run_cli("report", "--runs", str(broken), "--study", "depth", "--out", str(tmp_path / "report"))
    assert_one_line_error(proc, 2, "a run record lacks what the report needs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]
