"""Inference of every model on this CPU: onnxruntime at batch 1 and 256 with its default settings ("before") and
with the settings ``timing.tune`` picks per batch size ("after", as ``mnistzoo eval`` and the export run it),
against Keras, this CPU's ceiling and the time it takes just to read the weights.

    python scripts/bench_inference.py [--models PATTERN] [--rounds 5] [--load TEXT] [--out benchmarks/inference.md]

Files: each model's trained seed-0 run in the zoo home (``model.onnx``, ``model.int8.onnx``, ``model.keras``)
where there is one; else its architecture with seeded random weights, converted and quantized as the export
does (speed does not depend on the weights; accuracy is then not reported). ``mnistzoo.evaluate`` checks parity
against the Keras model once. Then, in each of several rounds, back to back: ORT at batch 1 before and after
tuning and as exported before the folds, with a graph that only reads the model's float32 weights once (the batch-1
floor of a float32 runtime; its faster of one thread and all cores), in chunks that take turns (the fastest chunk
counts); Keras under ``tf.function`` at batch 1, ORT at batch 256 before and after, the int8 file at batch 256
(tuned), and a large float32 GEMM (the ceiling: the faster of TensorFlow's and onnxruntime's, or the model itself at
batch 256 where that is faster). This machine's speed drifts, so every ratio is formed within a round; the table
gives the median over rounds and, for the headline shares, the lowest and highest round. MACs per image give the
work (2 FLOPs per MAC).
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import statistics
import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from mnistzoo import data
from mnistzoo import quantize
from mnistzoo._env import environment
from mnistzoo.errors import MnistZooError
from mnistzoo.evaluate import evaluate
from mnistzoo.keras_runtime import keras_latency
from mnistzoo.pretrained import locate
from mnistzoo.runtime import SessionSettings, make_session
from mnistzoo.timing import onnx_latency, settle, time_runs, tune
from mnistzoo.zoo import get_model, list_models
from mnistzoo.zoo.stats import model_stats

from _bench import ceiling_gflops, random_weights, unfolded

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

B256_SECONDS = 0.4  # timed per round at batch 256
# Batch 1 is timed per round in chunks that take turns; the fastest chunk counts, as the fastest matmul sets the
# ceiling: a slow spell of this machine then counts against neither side of a share.
B1_CHUNKS = 4
# This batch-1 goals (share of the ceiling after tuning), and the earlier ones this table still shows.
SMALL_MACS, HEAVY_MACS = 2_500_000, 10_000_000
GOALS = {"small_share": 0.50, "heavy_share": 0.65, "read_ratio": 1.1,
         "speedup": 10.0, "mlp_share": 0.70, "int8_ratio": 1.5, "int8_drop": 0.003}
LIGHT_MACS = 5_000_000  # below: ORT batch-1 p50 >= 10x faster than Keras
LARGE_MLP_MACS = 1_000_000  # MLPs at or above: batch-256 throughput >= 70% of the ceiling


def weight_reader(path: Path) -> tuple[bytes, dict[str, np.ndarray], int]:
    """A graph that reads each float32 weight tensor of ``path`` once (a 1-row MatMul each), its feed, its bytes.

    Its batch-1 time is the floor for any runtime that keeps the weights in float32: at batch 1 a large
    MLP does one multiply-add per weight, so reading them, not arithmetic, bounds it.
    """
    weights = [w for i in onnx.load(path).graph.initializer
               if (w := numpy_helper.to_array(i)).dtype == np.float32 and w.ndim >= 2]
    nodes, inputs, outputs, inits, feed = [], [], [], [], {}
    for k, w in enumerate(weights):
        w = w.reshape(w.shape[0], -1)
        inits.append(numpy_helper.from_array(w, f"w{k}"))
        inputs.append(helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, [1, w.shape[0]]))
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, [1, w.shape[1]]))
        nodes.append(helper.make_node("MatMul", [f"x{k}", f"w{k}"], [f"y{k}"]))
        feed[f"x{k}"] = np.ones((1, w.shape[0]), np.float32)
    graph = helper.make_graph(nodes, "weight_reader", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString(), feed, sum(w.nbytes for w in weights)


def before_the_folds(keras_path: Path) -> bytes:
    """The model as exports made it before the folds: BatchNorm as ``Mul`` and ``Add`` nodes of its own, and a ``Mul``
    by 1/255 on the input with the first layer's weights times 255 (the same function, a few roundings apart)."""
    model = unfolded(keras_path)
    graph = model.graph
    reshape = graph.node[0]
    layer = next(n for n in graph.node if reshape.output[0] in n.input)
    weight = next(i for i in graph.initializer if i.name == layer.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(255), weight.name))
    graph.initializer.append(numpy_helper.from_array(np.array(1 / 255, np.float32), "rescale"))
    graph.node.insert(0, helper.make_node("Mul", [reshape.input[0], "rescale"], ["rescaled"]))
    reshape.input[0] = "rescaled"
    return model.SerializeToString()


def model_files(model_id: str, ds: data.Dataset, directory: Path) -> dict:
    """The trained seed-0 run's files in the zoo home, else seeded random weights converted and quantized here."""
    try:
        (onnx_path, onnx_from), (keras_path, keras_from) = locate(model_id), locate(model_id, "keras")
    except MnistZooError:
        onnx_from = keras_from = None
    if onnx_from == keras_from == "zoo home":
        int8 = onnx_path.parent / "model.int8.onnx"
        return {"onnx": onnx_path, "keras": keras_path, "int8": int8 if int8.is_file() else None, "trained": True}
    onnx_path, keras_path = random_weights(model_id, directory)
    int8 = directory / f"{model_id}.int8.onnx"
    calibration, check, _ = quantize.calibration_images(ds)  # random weights: no accuracy to keep
    made = quantize.quantize_int8(unfolded(keras_path), int8, calibration, check)
    return {"onnx": onnx_path, "keras": keras_path, "int8": None if "skipped" in made else int8, "trained": False}


@functools.cache
def _dataset(name: str) -> data.Dataset:
    """Each dataset is loaded (and verified) once per benchmark run."""
    return data.load(name)


def _rounds(files: dict, images: np.ndarray, rounds: int, runs: int) -> tuple[dict[str, list[float]], dict]:
    """Per round: ORT b1 ms (the fastest of :data:`B1_CHUNKS` interleaved chunks' p50) before and after tuning and
    before the folds, with the weight-read ms; Keras b1 p50, b256 images/s before and after tuning and of the int8
    file, the ceiling in GFLOP/s; and the tuned settings per batch size."""
    default = make_session(files["onnx"])
    tuned = tune(files["onnx"], images, [1, 256])
    old = make_session(before_the_folds(files["keras"]), settings=tuned[1].mnistzoo_settings)
    int8 = tune(files["int8"], images, [256], quantized=True)[256] if files["int8"] else None
    graph, feed, _ = weight_reader(files["onnx"])
    readers = [make_session(graph, settings=SessionSettings(threads=n)) for n in (1, None)]
    model = keras.models.load_model(files["keras"])
    s: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        chunks: dict[str, list[float]] = defaultdict(list)
        for _ in range(B1_CHUNKS):
            for name, sess in (("b1_before", default), ("b1_after", tuned[1]), ("b1_unfolded", old)):
                chunks[name].append(onnx_latency(sess, images, [1], runs=runs // B1_CHUNKS)[0].p50_ms)
            settle()  # every timing starts once the last session's spinning threads have parked
            chunks["read"].append(min(1e3 * statistics.median(time_runs(lambda r=r: r.run(None, feed),
                                                                        runs // B1_CHUNKS, 20, None))
                                      for r in readers))
        for name, times in chunks.items():
            s[name].append(min(times))
        settle()
        s["keras_b1"].append(keras_latency(model, images, [1], runs=runs, with_predict=False)[0].p50_ms)
        for name, sess in (("before", default), ("after", tuned[256]), ("int8", int8)):
            if sess is not None:
                s[f"b256_{name}"].append(onnx_latency(sess, images, [256], seconds=B256_SECONDS)[0].images_per_s)
        settle()
        s["ceiling"].append(ceiling_gflops())
    return s, {b: sess.mnistzoo_settings for b, sess in tuned.items()}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "low": min(values), "high": max(values)}


def _settings(settings: SessionSettings) -> str:
    spin = "" if settings.threads == 1 else ", spin" if settings.spinning else ", no spin"
    chunk = f", calls of {settings.chunk}" if settings.chunk else ""
    return f"{settings.threads} thr{spin}, {settings.optimization}{chunk}"


def measure(model_id: str, rounds: int, runs: int, directory: Path) -> dict:
    zoo_model = get_model(model_id)
    stats = model_stats(zoo_model)
    ds = _dataset(zoo_model.spec.recipe.dataset)
    files = model_files(model_id, ds, directory)
    checked = evaluate(files["onnx"], dataset=ds.name, keras_path=files["keras"], batch_sizes=[1], runs=10,
                       tuned=False)
    s, settings = _rounds(files, ds.x_test, rounds, runs)
    gflop = 2 * stats.macs / 1e9
    # The convolutions' share of the work: the dense layers' multiply-adds are their weights, which the floor reads.
    conv_gflop = gflop - 2 * sum(r.params - r.output_shape[-1] for r in stats.layers if r.type == "Dense") / 1e9
    # The ceiling: the fastest float32 rate seen in any round (the model itself at batch 256 can beat a square GEMM),
    # so that a share is never flattered by a round whose matmuls met a slow spell.
    ceiling = max(max(c, gflop * a, gflop * b) for c, a, b in zip(s["ceiling"], s["b256_before"], s["b256_after"]))
    row = {"id": model_id, "mlp": not zoo_model.image_input, "trained": files["trained"], "macs": stats.macs,
           "weight_mb": sum(numpy_helper.to_array(i).nbytes for i in onnx.load(files["onnx"]).graph.initializer) / 1e6,
           "accuracy": checked["accuracy"] if files["trained"] else None, "parity": checked["parity"]["passed"],
           "ceiling": ceiling, "read_ms": statistics.median(s["read"]),
           "keras_b1_ms": statistics.median(s["keras_b1"]), "settings": settings}
    for when in ("before", "after"):
        row[f"b1_{when}_ms"] = statistics.median(s[f"b1_{when}"])
        row[f"b1_{when}_share"] = _spread([gflop / (t / 1e3) / ceiling for t in s[f"b1_{when}"]])
        row[f"b256_{when}_share"] = _spread([gflop * i / ceiling for i in s[f"b256_{when}"]])
    row["fold_gain"] = statistics.median(u / t for u, t in zip(s["b1_unfolded"], s["b1_after"]))
    row["read_ratio"] = statistics.median(t / r for t, r in zip(s["b1_after"], s["read"]))
    row["bound_share"] = statistics.median(gflop / (r / 1e3 + conv_gflop / ceiling) / ceiling for r in s["read"])
    row["speedup"] = statistics.median(k / t for k, t in zip(s["keras_b1"], s["b1_after"]))
    if s["b256_int8"]:
        row["int8_ratio"] = statistics.median(i / f for i, f in zip(s["b256_int8"], s["b256_after"]))
        if files["trained"]:
            row["int8_drop"] = checked["accuracy"] - evaluate(files["int8"], batch_sizes=[1], runs=10,
                                                              tuned=False)["accuracy"]
    return row


def goals(row: dict) -> list[str]:
    """The goals that apply to this model, each with whether it was met (on the median)."""
    out = []
    if row["macs"] >= SMALL_MACS:
        goal = GOALS["heavy_share"] if row["macs"] >= HEAVY_MACS else GOALS["small_share"]
        met = row["b1_after_share"]["median"] >= goal
        out.append(f"b1 >= {goal:.0%} ceiling: {_yes(met)}" + (
            "" if met or row["bound_share"] >= goal else f" (out of reach: the floor allows {row['bound_share']:.0%})"))
    if row["mlp"]:
        out.append(f"b1 <= {GOALS['read_ratio']}x weight read: {_yes(row['read_ratio'] <= GOALS['read_ratio'])}")
    if row["macs"] < LIGHT_MACS:
        met = row["speedup"] >= GOALS["speedup"]
        bound = row["keras_b1_ms"] / row["read_ms"]
        out.append(f"b1 {GOALS['speedup']:.0f}x Keras: {_yes(met)}" + (
            "" if met or bound >= GOALS["speedup"] else f" (out of reach: reading the weights allows {bound:.1f}x)"))
    if row["mlp"] and row["macs"] >= LARGE_MLP_MACS:
        out.append(f"b256 >= 70% ceiling: {_yes(row['b256_after_share']['median'] >= GOALS['mlp_share'])}")
    if row["mlp"] and "int8_drop" in row:
        met = row["int8_ratio"] >= GOALS["int8_ratio"] and row["int8_drop"] <= GOALS["int8_drop"]
        out.append(f"int8 >= 1.5x, <= 0.3 pp: {_yes(met)}")
    return out


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


def _times(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def _share(spread: dict) -> str:
    return f"{spread['median']:.0%} ({spread['low']:.0%}–{spread['high']:.0%})"


def render(rows: list[dict], args: argparse.Namespace) -> str:
    env = environment()
    ceilings = [r["ceiling"] for r in rows]
    lines = [
        "# Inference: onnxruntime before and after per-batch tuning, against Keras and this CPU's ceiling", "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/bench_inference.py --rounds "
        f"{args.rounds}` on {env['cpu']} ({env['cores']} cores; vector features: "
        f"{', '.join(env['cpu_features']) or 'none listed'}), GPU: {env['gpu'] or 'none'}; onnxruntime "
        f"{env['onnxruntime']} (CPUExecutionProvider), TensorFlow {env['tensorflow']}. Load: {args.load}.", "",
        f"Each model is timed in {args.rounds} rounds. A round runs, back to back: {B1_CHUNKS} chunks that take "
        f"turns, each timing ORT at batch 1 ({args.timed_runs // B1_CHUNKS} runs after 20 warm-up runs, p50) with "
        "onnxruntime's default settings (all cores, spinning, every optimisation: **before**), with the settings "
        "`timing.tune` picks for that batch size, as `mnistzoo eval` and the export now run (**after**), and with "
        "those settings the same weights as exports made them before the folds, the 1/255 rescale and each "
        "BatchNorm a node of its own (**unfolded / after**: above 1.00x the folds pay), and a graph that only "
        "reads the model's float32 weights once (one 1-row MatMul per weight tensor, the faster of one thread and "
        "all cores: the batch-1 floor of a float32 runtime); each of these counts its fastest chunk, as the "
        "ceiling below is the fastest rate seen, so that a slow spell of this machine counts against neither side "
        "of a share; then Keras under `tf.function` at batch 1 "
        f"({args.timed_runs} runs, p50); ORT at batch 256 before and after and the int8 file at batch 256 "
        f"({B256_SECONDS} s each, images/s); and a 2048x2048 float32 matmul in TensorFlow and in onnxruntime. "
        "**Floor share**: the most of the ceiling a runtime that runs the layers one after "
        "another could reach at batch 1, its time being the weight read (one call's fixed cost included, and the "
        "dense layers' multiply-adds, one per weight) plus the convolutions' multiply-adds at the ceiling; a goal "
        "above it is out of reach. Each timing starts once the previous session's idle threads have stopped "
        "spinning (`timing.settle`: onnxruntime's spin on for about 60 ms after a run, and a session timed meanwhile "
        "has one core fewer). Ratios are formed within a round; the table gives the median over rounds and, in "
        "brackets, the lowest and highest round. Share = 2 x MACs per image / time / the model's ceiling, the "
        "fastest float32 rate seen in any of its rounds: the faster matmul, or the model itself at batch 256 where "
        f"that is faster, as it is for the heavier models (median over all models {statistics.median(ceilings):.0f} GFLOP/s, "
        f"{min(ceilings):.0f}–{max(ceilings):.0f}; a ceiling too low would flatter every share). "
        "Weights: a trained seed-0 run of the zoo home, or seeded random weights (converted and quantized as the "
        "export does; speed does not depend on the weights, and no accuracy is given). Parity: `mnistzoo eval`'s "
        "check of the ONNX file against its Keras model.", "",
        f"Goals: every model of >= {SMALL_MACS / 1e6:.1f} M MACs at >= {GOALS['small_share']:.0%} of the ceiling "
        f"at batch 1 after tuning, those of >= {HEAVY_MACS / 1e6:.0f} M MACs at >= {GOALS['heavy_share']:.0%}; "
        f"MLPs (weight-bound) at <= {GOALS['read_ratio']}x their weight-read floor. Still shown: models under "
        f"{LIGHT_MACS / 1e6:.0f} M MACs at batch 1 >= {GOALS['speedup']:.0f}x faster than Keras; MLPs of >= "
        f"{LARGE_MLP_MACS / 1e6:.0f} M MACs at batch 256 >= {GOALS['mlp_share']:.0%} of the ceiling; int8 MLPs "
        f">= {GOALS['int8_ratio']}x float32 at batch 256 with <= {100 * GOALS['int8_drop']:.1f} pp accuracy loss.",
        "",
        "| model | weights | MACs | weights MB | accuracy | parity | b1 ms before | b1 ms after | unfolded / after | "
        "b1 settings | "
        "b1 share before | b1 share after | weight read ms | after / read | floor share | Keras b1 ms | vs Keras | "
        "b256 share before | b256 share after | b256 settings | int8 speed | int8 acc loss (pp) | goals |",
        "|---|---|---:|---:|---:|:-:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        accuracy = "—" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        int8 = _times(r.get("int8_ratio"))
        drop = f"{100 * r['int8_drop']:.2f}" if "int8_drop" in r else "—"
        lines.append(
            f"| {r['id']} | {'trained' if r['trained'] else 'random'} | {r['macs']:,} | {r['weight_mb']:.2f} | "
            f"{accuracy} | {'pass' if r['parity'] else 'FAIL'} | {r['b1_before_ms']:.3f} | {r['b1_after_ms']:.3f} | "
            f"{_times(r['fold_gain'])} | {_settings(r['settings'][1])} | {_share(r['b1_before_share'])} | "
            f"{_share(r['b1_after_share'])} | "
            f"{r['read_ms']:.3f} | {r['read_ratio']:.2f}x | {r['bound_share']:.0%} | {r['keras_b1_ms']:.3f} | {r['speedup']:.1f}x | "
            f"{_share(r['b256_before_share'])} | {_share(r['b256_after_share'])} | {_settings(r['settings'][256])} | "
            f"{int8} | {drop} | {'; '.join(goals(r))} |")
    this = [g for r in rows for g in goals(r) if g.startswith(("b1 >=", "b1 <="))]
    lines += ["", f"**This issue's batch-1 goals**: {sum(g.endswith('yes') for g in this)} of {len(this)} met.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    parser.add_argument("--timed-runs", type=int, default=1000, help="timed batch-1 runs per side and round")
    parser.add_argument("--models", default="*", help="fnmatch pattern of model ids (default: all)")
    parser.add_argument("--load", default="nothing else ran on the machine",
                        help="what else ran during the measurement, for the record")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/inference.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_id in fnmatch.filter(list_models(), args.models):
            rows.append(measure(model_id, args.rounds, args.timed_runs, Path(tmp)))
            print({k: v for k, v in rows[-1].items() if k != "settings"}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, args))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
