"""Inference benchmark of every exported model: ORT against Keras and against this CPU's ceiling.

    python scripts/bench_inference.py [--runs DIR] [--out benchmarks/inference.md]

For each run directory holding ``model.onnx`` (default: the zoo home's runs), ``mnistzoo.evaluate``
measures accuracy, ORT latency at batch 1 and 256, and Keras under ``tf.function`` on the same
batches; ``model.int8.onnx`` is measured the same way when present. A large float32 GEMM timed
in the same run gives the ceiling; MACs per image give the work (2 FLOPs per MAC).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from mnistzoo._env import environment
from mnistzoo.evaluate import evaluate
from mnistzoo.train import runs_dir
from mnistzoo.zoo import get_model
from mnistzoo.zoo.stats import model_stats

from _bench import gemm_gflops

LIGHT_MACS = 5_000_000  # below: ORT batch-1 p50 must beat Keras tf.function by 10x
LARGE_MLP_MACS = 1_000_000  # MLPs at or above: batch-256 throughput >= 70% of the ceiling
GOALS = {"speedup": 10.0, "heavy_share": 0.60, "mlp_share": 0.70, "int8_ratio": 1.5, "int8_drop": 0.003}


def _row(result: dict, batch: int, provider: str = "CPUExecutionProvider") -> dict:
    rows = result["latency"] + result.get("keras_latency", [])
    return next(r for r in rows if r["batch_size"] == batch and r["provider"] == provider)


def measure(run: Path, ceiling: float, runs: int) -> dict:
    model_id = run.name
    zoo_model = get_model(model_id)
    stats = model_stats(zoo_model.build())
    fp32 = evaluate(run / "model.onnx", compare_keras=True, batch_sizes=[1, 256], runs=runs)
    b1, b256 = _row(fp32, 1), _row(fp32, 256)
    keras_b1 = _row(fp32, 1, "keras tf.function")
    flops = 2 * stats.macs
    row = {"id": model_id, "mlp": not zoo_model.image_input,
           "params": stats.params_total, "macs": stats.macs, "accuracy": fp32["accuracy"],
           "parity": fp32["parity"]["passed"] if fp32["parity"] else None,
           "b1_p50_ms": b1["p50_ms"], "b256_ips": b256["images_per_s"], "keras_b1_p50_ms": keras_b1["p50_ms"],
           "speedup": keras_b1["p50_ms"] / b1["p50_ms"],
           "b1_share": flops / (b1["p50_ms"] / 1e3) / 1e9 / ceiling,
           "b256_share": flops * b256["images_per_s"] / 1e9 / ceiling}
    if (run / "model.int8.onnx").exists():
        int8 = evaluate(run / "model.int8.onnx", batch_sizes=[256], runs=runs)
        row["int8_drop"] = fp32["accuracy"] - int8["accuracy"]
        row["int8_ratio"] = _row(int8, 256)["images_per_s"] / b256["images_per_s"]
    return row


def goals(row: dict) -> list[str]:
    """The goals that apply to this model, each with whether it was met."""
    out = []
    if row["macs"] < LIGHT_MACS:
        out.append(f"b1 {GOALS['speedup']:.0f}x Keras: {'yes' if row['speedup'] >= GOALS['speedup'] else 'NO'}")
    else:
        out.append(f"b1 >= 60% ceiling: {'yes' if row['b1_share'] >= GOALS['heavy_share'] else 'NO'}")
    if row["mlp"] and row["macs"] >= LARGE_MLP_MACS:
        out.append(f"b256 >= 70% ceiling: {'yes' if row['b256_share'] >= GOALS['mlp_share'] else 'NO'}")
    if row["mlp"] and "int8_ratio" in row:
        met = row["int8_ratio"] >= GOALS["int8_ratio"] and row["int8_drop"] <= GOALS["int8_drop"]
        out.append(f"int8 >= 1.5x, <= 0.3 pp: {'yes' if met else 'NO'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=None, help="runs directory (default: $MNISTZOO_HOME/runs)")
    parser.add_argument("--timed-runs", type=int, default=200, help="timed runs per batch size")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/inference.md"))
    args = parser.parse_args()

    ceiling = gemm_gflops()
    rows = []
    for run in sorted(p.parent for p in runs_dir(args.runs).glob("*@*/model.onnx")):
        rows.append(measure(run, ceiling, args.timed_runs))
        print(rows[-1], flush=True)
    env = environment()
    lines = [
        "# Inference: onnxruntime against Keras and against the CPU's ceiling", "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/bench_inference.py` on {env['cpu']} "
        f"({env['cores']} cores), GPU: {env['gpu'] or 'none'}; onnxruntime {env['onnxruntime']} "
        f"(CPUExecutionProvider, ORT_ENABLE_ALL, {env['cores']} intra-op threads), TensorFlow {env['tensorflow']}. "
        f"Ceiling: a 2048x2048 float32 matmul in the same run, {ceiling:.0f} GFLOP/s. Latency is the p50 of "
        f"{args.timed_runs} timed runs after 20 warm-up runs; Keras runs the same batch under `tf.function`. "
        "Share of ceiling = 2 x MACs per image x images/s / ceiling. Accuracy is ORT's on the full test set; "
        "parity is `mnistzoo eval`'s check against the Keras checkpoint.", "",
        "Goals: models under 5 M MACs: ORT batch-1 p50 >= 10x faster than Keras; heavier models: batch-1 work "
        ">= 60% of the ceiling; MLPs of >= 1 M MACs: batch-256 >= 70% of the ceiling; int8 MLPs: >= 1.5x fp32 "
        "batch-256 throughput with <= 0.3 pp accuracy loss.", "",
        "| model | params | MACs | accuracy | parity | ORT b1 p50 ms | Keras b1 p50 ms | speed-up | b1 share "
        "| ORT b256 images/s | b256 share | int8 speed | int8 acc loss (pp) | goals |",
        "|---|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        int8 = (f"{r['int8_ratio']:.2f}x", f"{100 * r['int8_drop']:.2f}") if "int8_ratio" in r else ("-", "-")
        lines.append(f"| {r['id']} | {r['params']:,} | {r['macs']:,} | {r['accuracy']:.4f} | "
                     f"{'pass' if r['parity'] else 'FAIL' if r['parity'] is False else '-'} | {r['b1_p50_ms']:.3f} | "
                     f"{r['keras_b1_p50_ms']:.3f} | {r['speedup']:.1f}x | {r['b1_share']:.0%} | {r['b256_ips']:,.0f} | "
                     f"{r['b256_share']:.0%} | {int8[0]} | {int8[1]} | {'; '.join(goals(r))} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
