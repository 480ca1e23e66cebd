"""Inference benchmark of every exported model: ORT against Keras and against this CPU's ceiling.

    python scripts/bench_inference.py [--runs DIR] [--rounds 5] [--out benchmarks/inference.md]

For each run directory holding ``model.onnx`` (default: the zoo home's runs), ``mnistzoo.evaluate``
checks accuracy and parity once; then, in each of several rounds, the script times back to back
ORT at batch 1 and 256, Keras under ``tf.function`` at batch 1, ``model.int8.onnx`` at batch 256
(when present), a large float32 GEMM (the compute ceiling) and a graph that only reads the model's
float32 weights once (the batch-1 floor: no runtime can read the weights faster than it does).
This machine's speed drifts by up to 2x
over seconds, so every ratio is taken within a round, where all sides saw the same conditions;
the table gives the median over rounds, and the lowest and highest round for the headline ratios.
MACs per image give the work (2 FLOPs per MAC).
"""

from __future__ import annotations

import argparse
import functools
import statistics
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from mnistzoo import data
from mnistzoo._env import environment
from mnistzoo.evaluate import evaluate
from mnistzoo.keras_runtime import keras_latency
from mnistzoo.runtime import make_session, onnx_latency, time_runs
from mnistzoo.runs import runs_dir
from mnistzoo.zoo import get_model
from mnistzoo.zoo.stats import model_stats

from _bench import gemm_gflops

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

LIGHT_MACS = 5_000_000  # below: ORT batch-1 p50 must beat Keras tf.function by 10x
LARGE_MLP_MACS = 1_000_000  # MLPs at or above: batch-256 throughput >= 70% of the ceiling
GOALS = {"speedup": 10.0, "heavy_share": 0.60, "mlp_share": 0.70, "int8_ratio": 1.5, "int8_drop": 0.003}
B256_SECONDS = 0.4  # timed per round at batch 256


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


def _rounds(run: Path, images, rounds: int, runs: int, reader_graph: bytes,
            reader_feed: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per round: ORT b1 p50, Keras b1 p50, ORT b256 images/s, int8 b256 images/s, GEMM GFLOP/s, weight-read ms."""
    fp32 = make_session(run / "model.onnx")
    reader = make_session(reader_graph)
    int8 = make_session(run / "model.int8.onnx") if (run / "model.int8.onnx").exists() else None
    model = keras.models.load_model(run / "model.keras")
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        samples["b1"].append(onnx_latency(fp32, images, [1], runs=runs)[0].p50_ms)
        samples["keras_b1"].append(keras_latency(model, images, [1], runs=runs, with_predict=False)[0].p50_ms)
        samples["b256"].append(onnx_latency(fp32, images, [256], seconds=B256_SECONDS)[0].images_per_s)
        if int8 is not None:
            samples["int8_b256"].append(onnx_latency(int8, images, [256], seconds=B256_SECONDS)[0].images_per_s)
        samples["ceiling"].append(gemm_gflops(repeats=3))
        read = time_runs(lambda: reader.run(None, reader_feed), runs, 20, None)
        samples["read"].append(1e3 * statistics.median(read))
    return samples


@functools.cache
def _test_images(dataset: str):
    """Each dataset is loaded (and verified) once per benchmark run."""
    return data.load(dataset).x_test


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "low": min(values), "high": max(values)}


def measure(run: Path, rounds: int, runs: int) -> dict:
    zoo_model = get_model(run.parent.name)
    stats = model_stats(zoo_model)
    checked = evaluate(run / "model.onnx", batch_sizes=[1], runs=10)  # accuracy and parity, once
    reader_graph, reader_feed, weight_bytes = weight_reader(run / "model.onnx")
    s = _rounds(run, _test_images(checked["dataset"]), rounds, runs, reader_graph, reader_feed)
    gflops = 2 * stats.macs / 1e9
    row = {"id": run.parent.name, "mlp": not zoo_model.image_input, "params": stats.params_total, "macs": stats.macs,
           "accuracy": checked["accuracy"],
           "parity": checked["parity"]["passed"] if checked["parity"] else None,
           "weight_mb": weight_bytes / 1e6,
           "b1_p50_ms": statistics.median(s["b1"]), "keras_b1_p50_ms": statistics.median(s["keras_b1"]),
           "read_ms": statistics.median(s["read"]),
           "speedup_bound": _spread([k / r for k, r in zip(s["keras_b1"], s["read"])]),
           "b256_ips": statistics.median(s["b256"]), "ceiling": statistics.median(s["ceiling"]),
           "speedup": _spread([k / o for k, o in zip(s["keras_b1"], s["b1"])]),
           "b1_share": _spread([gflops / (t / 1e3) / c for t, c in zip(s["b1"], s["ceiling"])]),
           "b256_share": _spread([gflops * ips / c for ips, c in zip(s["b256"], s["ceiling"])])}
    if s["int8_b256"]:
        row["int8_drop"] = checked["accuracy"] - evaluate(run / "model.int8.onnx", batch_sizes=[1], runs=10)["accuracy"]
        row["int8_ratio"] = _spread([i / f for i, f in zip(s["int8_b256"], s["b256"])])
    return row


def goals(row: dict) -> list[str]:
    """The goals that apply to this model, each with whether it was met."""
    out = []
    if row["macs"] < LIGHT_MACS:
        met = row["speedup"]["median"] >= GOALS["speedup"]
        bound = "" if met or row["speedup_bound"]["median"] >= GOALS["speedup"] else \
            f" (out of reach: reading the weights alone allows {row['speedup_bound']['median']:.1f}x)"
        out.append(f"b1 {GOALS['speedup']:.0f}x Keras: {_yes(met)}{bound}")
    else:
        out.append(f"b1 >= 60% ceiling: {_yes(row['b1_share']['median'] >= GOALS['heavy_share'])}")
    if row["mlp"] and row["macs"] >= LARGE_MLP_MACS:
        out.append(f"b256 >= 70% ceiling: {_yes(row['b256_share']['median'] >= GOALS['mlp_share'])}")
    if row["mlp"] and "int8_ratio" in row:
        met = row["int8_ratio"]["median"] >= GOALS["int8_ratio"] and row["int8_drop"] <= GOALS["int8_drop"]
        out.append(f"int8 >= 1.5x, <= 0.3 pp: {_yes(met)}")
    return out


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


def _ratio(spread: dict, fmt: str = ".1f") -> str:
    return f"{spread['median']:{fmt}}x ({spread['low']:{fmt}}–{spread['high']:{fmt}})"


def _share(spread: dict) -> str:
    return f"{spread['median']:.0%} ({spread['low']:.0%}–{spread['high']:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=None, help="runs directory (default: $MNISTZOO_HOME/runs)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    parser.add_argument("--timed-runs", type=int, default=200, help="timed batch-1 runs per side and round")
    parser.add_argument("--models", default="*", help="fnmatch pattern of run names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/inference.md"))
    args = parser.parse_args()

    rows = []
    for run in sorted(p.parent for p in runs_dir(args.runs).glob(f"{args.models}/seed0/model.onnx")
                      if "@" in p.parent.parent.name):
        rows.append(measure(run, args.rounds, args.timed_runs))
        print(rows[-1], flush=True)
    env = environment()
    ceilings = [r["ceiling"] for r in rows]
    lines = [
        "# Inference: onnxruntime against Keras and against the CPU's ceiling", "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/bench_inference.py --rounds "
        f"{args.rounds}` on {env['cpu']} ({env['cores']} cores), GPU: {env['gpu'] or 'none'}; onnxruntime "
        f"{env['onnxruntime']} (CPUExecutionProvider, ORT_ENABLE_ALL, {env['cores']} intra-op threads), "
        f"TensorFlow {env['tensorflow']}. No GPU was available to this project's sessions, so there are no GPU "
        "figures.", "",
        f"Each model is timed in {args.rounds} rounds. A round runs, back to back: ORT at batch 1 "
        f"({args.timed_runs} runs after 20 warm-up runs, p50), Keras under `tf.function` on the same batch, ORT at "
        f"batch 256 and the int8 file at batch 256 ({B256_SECONDS} s each, images/s), and a 2048x2048 float32 "
        f"matmul (the ceiling; median over all rounds {statistics.median(ceilings):.0f} GFLOP/s, rounds "
        f"{min(ceilings):.0f}–{max(ceilings):.0f}). This VM's speed drifts by up to 2x, so each ratio is formed "
        "within a round; the table gives the median over rounds and, in brackets, the lowest and highest round. "
        "Share of ceiling = 2 x MACs per image x images/s / that round's ceiling. Accuracy is ORT's on the full "
        "test set; parity is `mnistzoo eval`'s check against the Keras checkpoint. **Weight read** is the batch-1 "
        "floor: the p50 of a graph that only reads the model's float32 weights once (one 1-row MatMul per weight "
        "tensor, same threads), timed in the same round; Keras p50 / that floor bounds the batch-1 speed-up any "
        "float32 runtime could reach here.", "",
        "Goals: models under 5 M MACs: ORT batch-1 p50 >= 10x faster than Keras; heavier models: batch-1 work "
        ">= 60% of the ceiling; MLPs of >= 1 M MACs: batch-256 >= 70% of the ceiling; int8 MLPs: >= 1.5x fp32 "
        "batch-256 throughput with <= 0.3 pp accuracy loss. A goal counts as met on the median.", "",
        "| model | params | MACs | weights MB | accuracy | parity | ORT b1 p50 ms | weight read ms | Keras b1 p50 ms "
        "| speed-up | bound | b1 share "
        "| ORT b256 images/s | b256 share | int8 speed | int8 acc loss (pp) | goals |",
        "|---|---:|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        int8 = (_ratio(r["int8_ratio"], ".2f"), f"{100 * r['int8_drop']:.2f}") if "int8_ratio" in r else ("-", "-")
        lines.append(f"| {r['id']} | {r['params']:,} | {r['macs']:,} | {r['weight_mb']:.2f} | {r['accuracy']:.4f} | "
                     f"{'pass' if r['parity'] else 'FAIL' if r['parity'] is False else '-'} | {r['b1_p50_ms']:.3f} | "
                     f"{r['read_ms']:.3f} | {r['keras_b1_p50_ms']:.3f} | {_ratio(r['speedup'])} | "
                     f"{r['speedup_bound']['median']:.1f}x | {_share(r['b1_share'])} | "
                     f"{r['b256_ips']:,.0f} | {_share(r['b256_share'])} | {int8[0]} | {int8[1]} | "
                     f"{'; '.join(goals(r))} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
