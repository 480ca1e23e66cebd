"""`mnistzoo eval` on freshly exported small models: accuracy, parity (pass and fail), latency, JSON, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_helpers import assert_one_line_error, run_cli

FAST = ("--runs", "20", "--batch-sizes", "1,8")


@pytest.fixture(scope="session")
def onnx_file(exported: Path) -> Path:
    return exported / "model.onnx"


def test_eval_reports_keras_accuracy_and_passes_parity(onnx_file: Path, runs: Path, home: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    proc = run_cli("eval", str(onnx_file), *FAST, "--compare-keras", "--keras", str(runs / "mlp3_dropout_bn@1" / "seed0" /
                   "model.weights.h5"), "--json", str(out), "--plots", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) >= {"schema", "path", "id", "name", "accuracy", "loss", "per_class_accuracy", "parity", "latency", "keras_latency",
                           "environment"}
    card = json.loads((runs / "mlp3_dropout_bn@1" / "seed0" / "card.json").read_text())
    swaps = result["parity"]["tie_swaps"]  # ties that this CPU's rounding resolved the other way
    assert result["accuracy"] == pytest.approx(card["results"]["test_accuracy"], abs=(swaps + 1) / 10_000)
    assert result["loss"] == pytest.approx(card["results"]["test_loss"], rel=1e-3)
    assert len(result["per_class_accuracy"]) == 10 and all(0 <= a <= 1 for a in result["per_class_accuracy"])
    parity = result["parity"]
    assert {"agreement", "flipped", "max_abs_diff", "mean_abs_diff", "accuracy_delta", "passed"} <= set(parity)
    assert parity["passed"] and parity["flipped"] == 0 and parity["matches_card"]
    for row in result["latency"] + result["keras_latency"]:
        assert set(row) >= {"batch_size", "p50_ms", "p90_ms", "p99_ms", "images_per_s", "provider", "threads"}
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["images_per_s"] > 0
    assert [r["batch_size"] for r in result["latency"]] == [1, 8]
    assert result["latency"][0]["provider"] == "CPUExecutionProvider"
    assert {r["provider"] for r in result["keras_latency"]} == {"keras tf.function", "keras model.predict"}
    for row in result["latency"]:  # each batch size ran with the fastest settings tried for it
        assert row["tuned"] and row["optimization"] in ("extended", "all") and isinstance(row["spinning"], bool)
    assert result["environment"]["onnxruntime"] and "cpu_features" in result["environment"]
    assert (tmp_path / "plots" / "mlp3_dropout_bn_v1_confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "parity with" in proc.stdout and "passed" in proc.stdout


def test_tuning_picks_per_batch_size_among_settings_that_compute_the_same(onnx_file: Path, tmp_path: Path) -> None:
    import numpy as np

    from mnistzoo.runtime import SessionSettings, make_session, predict_onnx
    from mnistzoo.timing import CHUNKS, candidate_settings, tune

    x = np.random.default_rng(0).integers(0, 256, (64, 28, 28)).astype(np.float32)
    candidates = candidate_settings(quantized=True)
    assert {(c.threads, c.optimization) for c in candidates} >= {(1, "extended"), (1, "all")}
    assert {c.quantization_moves for c in candidates} == {True, False}
    assert {c.quantization_moves for c in candidate_settings()} == {True}  # a float file has nothing to move
    expected = predict_onnx(make_session(onnx_file), x)
    for settings in candidates:
        np.testing.assert_allclose(predict_onnx(make_session(onnx_file, settings=settings), x), expected, atol=1e-6)
    chosen = tune(onnx_file, x, [1, 64], threads=1, rounds=2, seconds=0.01)
    assert set(chosen) == {1, 64}
    assert all(s.get_session_options().intra_op_num_threads == 1 for s in chosen.values())  # --threads fixes it
    assert chosen[1].mnistzoo_settings.chunk is None and chosen[64].mnistzoo_settings.chunk in {None, 32, 16}
    assert set(CHUNKS) >= {32, 16} and max(CHUNKS) < 256  # batch 256 gets smaller calls to try
    kept = tune(onnx_file, x, [1], seconds=0.001, margin=1.0)  # none can be 100 % faster: the defaults stay
    assert kept[1].mnistzoo_settings == SessionSettings(threads=os.cpu_count())
    proc = run_cli("eval", str(onnx_file), *FAST, "--no-tune", "--threads", "1", "--json", str(tmp_path / "e.json"))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "e.json").read_text())["latency"]
    assert [(r["tuned"], r["threads"], r["optimization"], r["quantization_moves"]) for r in rows] == \
        [(False, 1, "all", True)] * 2


def test_a_chunked_session_runs_a_batch_as_calls_of_that_many_images(onnx_file: Path) -> None:
    import numpy as np

    from mnistzoo.runtime import SessionSettings, infer, make_session

    x = np.random.default_rng(1).integers(0, 256, (40, 28, 28)).astype(np.float32)
    chunked = make_session(onnx_file, settings=SessionSettings(chunk=16))
    sizes: list[int] = []
    run = chunked.run
    chunked.run = lambda names, feed: sizes.append(len(feed["image"])) or run(names, feed)
    np.testing.assert_allclose(infer(chunked, x), infer(make_session(onnx_file), x), atol=1e-6)
    assert sizes == [16, 16, 8]
    infer(chunked, x[:16])
    assert sizes[3:] == [16]


def test_a_profiling_session_writes_each_call_and_node_where_it_was_told(onnx_file: Path, tmp_path: Path) -> None:
    import numpy as np

    from mnistzoo.runtime import SessionSettings, infer, make_session

    x = np.zeros((40, 28, 28), np.float32)
    session = make_session(onnx_file, settings=SessionSettings(chunk=16), profile=str(tmp_path / "p"))
    infer(session, x)
    written = Path(session.end_profiling())
    assert written.parent == tmp_path and written.name.startswith("p")
    events = json.loads(written.read_text())
    assert sum(e["name"] == "model_run" for e in events) == 3
    assert any(e.get("cat") == "Node" and e["name"].endswith("_kernel_time") for e in events)


def test_throughput_is_compared_within_rounds_that_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import numpy as np

    from mnistzoo import timing

    calls, speed = [], iter([100.0, 150.0, 50.0, 75.0, 200.0, 100.0])  # the machine's speed drifts between rounds
    monkeypatch.setattr(timing, "onnx_latency", lambda session, *_, **__: calls.append(session) or
                        [SimpleNamespace(images_per_s=next(speed))])
    ips = timing.interleaved_throughput({"fp32": "a", "int8": "b"}, np.zeros((1, 28, 28)), 256, rounds=3)
    assert calls == ["a", "b"] * 3 and ips == {"fp32": [100.0, 50.0, 200.0], "int8": [150.0, 75.0, 100.0]}
    assert timing.median_ratio(ips["int8"], ips["fp32"]) == 1.5  # not 100/100, the ratio of the medians


def test_timing_waits_for_a_spinning_pool_to_park(onnx_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import numpy as np

    from mnistzoo import runtime, timing

    feed = {"image": np.zeros((256, 28, 28), np.float32)}
    spinning = runtime.make_session(onnx_file, threads=2)
    lone = runtime.make_session(onnx_file, settings=runtime.SessionSettings(threads=1))
    spinning.run(None, feed)
    timing.settle(spinning)  # its idle thread has parked: the process is quiet, another session gets both cores
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(0.05)
    assert time.process_time() - cpu < 0.5 * (time.perf_counter() - wall)
    slept: list[float] = []
    monkeypatch.setattr(timing.time, "sleep", slept.append)
    timing.settle(lone)  # one thread: no pool to wait for
    timing.settle(runtime.make_session(onnx_file, threads=2, settings=runtime.SessionSettings(spinning=False)))
    assert slept == []
    timing.settle(spinning)
    timing.settle()
    assert slept == [timing.SPIN_SETTLE_S] * 2


def test_eval_finds_the_checkpoint_beside_the_file(runs: Path, home: Path, tmp_path: Path) -> None:
    from mnistzoo.evaluate import evaluate
    from mnistzoo.export import export

    export("mlp3_dropout_bn", runs=runs)  # into the run directory, beside the weights it was exported from
    result = evaluate(runs / "mlp3_dropout_bn@1" / "seed0" / "model.onnx", runs=5, batch_sizes=[2])
    assert result["parity"]["passed"] and result["parity"]["checkpoint"].endswith("model.weights.h5")
    assert result["parity"]["matches_card"]


def test_eval_with_a_different_checkpoint_fails_parity(onnx_file: Path, runs: Path, home: Path) -> None:
    other = runs / "cnn3_k3@1" / "seed0" / "model.keras"
    proc = run_cli("eval", str(onnx_file), *FAST, "--keras", str(other))
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stdout and "parity with Keras failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_int8_file_is_judged_by_accuracy(exported: Path, runs: Path, home: Path) -> None:
    from mnistzoo.evaluate import evaluate

    result = evaluate(exported / "model.int8.onnx", keras_path=runs / "mlp3_dropout_bn@1" / "seed0" / "model.keras",
                      runs=5, batch_sizes=[1])
    assert result["parity"]["criterion"].startswith("quantized") and result["parity"]["passed"]


def test_foreign_file_needs_dataset(onnx_file: Path, home: Path, tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(onnx_file)
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, foreign)
    assert_one_line_error(run_cli("eval", str(foreign), *FAST), 2, "no mnistzoo card", "--dataset")
    proc = run_cli("eval", str(foreign), *FAST, "--dataset", "mnist")
    assert proc.returncode == 0, proc.stderr
    assert "no Keras checkpoint found" in proc.stdout


def _wrong_contract(onnx_file: Path, tmp_path: Path) -> Path:
    import onnx

    proto = onnx.load(onnx_file)
    proto.graph.input[0].name = "input_1"
    for node in proto.graph.node:
        node.input[:] = ["input_1" if n == "image" else n for n in node.input]
    path = tmp_path / "renamed.onnx"
    onnx.save(proto, path)
    return path


@pytest.mark.parametrize(("make", "args", "fragments"), [
    (lambda f, t: t / "missing.onnx", (), ("no such file",)),
    (lambda f, t: (t / "notes.onnx", (t / "notes.onnx").write_text("hello"))[0], (), ("not a valid ONNX model",)),
    (lambda f, t: (t / "cut.onnx", (t / "cut.onnx").write_bytes(f.read_bytes()[:5000]))[0], (),
     ("not a valid ONNX model",)),
    (_wrong_contract, (), ("wrong input contract", "expected one input 'image'", "found 'input_1'")),
    (lambda f, t: f, ("--provider", "tpu"), ("unknown provider 'tpu'",)),
    (lambda f, t: f, ("--provider", "cuda"), ("CUDA was asked for",)),
    (lambda f, t: f, ("--batch-sizes", "0,4"), ("--batch-sizes takes positive integers",)),
])
def test_bad_input(onnx_file: Path, tmp_path: Path, make, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    import onnxruntime

    if "cuda" in args and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    path = make(onnx_file, tmp_path)
    assert_one_line_error(run_cli("eval", str(path), *args), 2, *fragments)


def test_the_cpu_name_tells_generations_with_one_model_name_apart(tmp_path: Path) -> None:
    from mnistzoo._env import cpu_name

    block = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {f}\nmodel\t\t: {m}\nmodel name\t: AMD EPYC\n"
    zen1, zen2 = tmp_path / "zen1", tmp_path / "zen2"
    zen1.write_text(block.format(n=0, f=23, m=1) + "\n" + block.format(n=1, f=23, m=1))
    zen2.write_text(block.format(n=0, f=23, m=49))
    assert cpu_name(zen1) == "AMD EPYC (family 23 model 1)"
    assert cpu_name(zen2) == "AMD EPYC (family 23 model 49)"
    bare = tmp_path / "bare"
    bare.write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert cpu_name(bare) == "Some CPU"
