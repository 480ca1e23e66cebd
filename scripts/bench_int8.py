"""Where int8 pays: each CNN's int8 file against its float32 file at batch 256, before and after the float32
first convolution, on this CPU.

    python scripts/bench_int8.py [--models cnn2_k3,...] [--rounds 5] [--load TEXT] [--out benchmarks/int8.md]

For each model (default: every CNN) the float32 file is its trained seed-0 export where one is at hand (zoo
home, starter pack), else the architecture with seeded random weights (speed does not depend on the weights;
accuracy is then not reported). Two int8 files are made from it with ``mnistzoo.export.quantize_int8``:
"after" as the export makes it now, and "before" with the first convolution in int8 like every other
layer. Each file is timed at batch 256 with its fastest onnxruntime settings (``runtime.tune``; "before"
as before, without the quantization-move switch), the three taking turns within each round; the table
gives the median over rounds of int8 throughput over float32. Every int8 file is also checked against
``onnx.reference.ReferenceEvaluator`` on 16 test images.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from mnistzoo import data
from mnistzoo import export as exporter
from mnistzoo._env import cpu_features, environment, int8_features
from mnistzoo.runtime import onnx_latency, predict_onnx, make_session, tune
from mnistzoo.errors import MnistZooError
from mnistzoo.pretrained import locate
from mnistzoo.zoo import get_model, list_models
from mnistzoo.zoo.stats import model_stats

from _bench import random_weights

BATCH = 256
GOAL = 1.2


def float_file(model_id: str, directory: Path) -> tuple[Path, str | None]:
    """The trained seed-0 file where one is at hand (zoo home, starter pack), else a seeded random-weight
    conversion; where the trained one was found (None: random)."""
    try:
        return locate(model_id)
    except MnistZooError:
        return random_weights(model_id, directory)[0], None


def measure(model_id: str, ds: data.Dataset, rounds: int, directory: Path) -> dict:
    fp32, trained = float_file(model_id, directory)
    calibration, check = exporter.calibration_images(ds)
    before, after = directory / f"{model_id}.before.onnx", directory / f"{model_id}.after.onnx"
    exporter.quantize_int8(fp32, before, calibration, check, float_first_conv=False)
    exporter.quantize_int8(fp32, after, calibration, check)
    files = {"fp32": (fp32, False), "before": (before, False), "after": (after, True)}
    sessions = {name: tune(path, ds.x_test, [BATCH], quantized=moves)[BATCH] for name, (path, moves) in files.items()}
    ips: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, sess in sessions.items():
            ips[name].append(onnx_latency(sess, ds.x_test, [BATCH], seconds=0.5)[0].images_per_s)
    ratio = {name: statistics.median(a / f for a, f in zip(ips[name], ips["fp32"])) for name in ("before", "after")}
    row = {"model": model_id, "trained": trained, "macs": model_stats(get_model(model_id)).macs, **ratio,
           "fp32_ips": statistics.median(ips["fp32"]),
           "reference": max(exporter.reference_max_diff(path, ds.x_test[:16]) for path in (before, after))}
    if trained:
        acc = {name: float((predict_onnx(make_session(path), ds.x_test).argmax(1) == ds.y_test).mean())
               for name, (path, _) in files.items()}
        row |= {"fp32_acc": acc["fp32"], "before_drop": acc["before"] - acc["fp32"],
                "after_drop": acc["after"] - acc["fp32"]}
    return row


def render(rows: list[dict], args: argparse.Namespace) -> str:
    env = environment()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# int8 against float32 at batch 256, before and after the float32 first convolution", "",
        f"Measured {when} by `scripts/bench_int8.py --rounds {args.rounds}` on {env['cpu']} ({env['cores']} cores; "
        f"vector features: {', '.join(env['cpu_features']) or 'none listed'}; int8 dot-product instructions: "
        f"{', '.join(int8_features(cpu_features())) or 'none (no VNNI, no AMX)'}), onnxruntime {env['onnxruntime']}. "
        f"Load: {args.load}", "",
        "Each file at its fastest onnxruntime settings; ratios are int8 images/s over float32 images/s within a "
        "round, median over rounds. Accuracy (10,000 test images) only for a trained run; otherwise the weights "
        "are seeded random, which does not change the speed. `reference`: the largest |onnxruntime - "
        "onnx.reference| probability difference of either int8 file on 16 test images.", "",
        f"| model | MACs/image | weights | float32 images/s | int8 before | int8 after | ≥ {GOAL}x | "
        "accuracy change before | after | reference |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        acc = (f"{100 * r['before_drop']:+.2f} pp | {100 * r['after_drop']:+.2f} pp" if r["trained"] else "— | —")
        weights = f"trained ({r['trained']})" if r["trained"] else "random"
        lines.append(f"| {r['model']} | {r['macs']:,} | {weights} | "
                     f"{r['fp32_ips']:,.0f} | {r['before']:.2f}x | {r['after']:.2f}x | "
                     f"{'yes' if r['after'] >= GOAL else 'NO'} | {acc} | {r['reference']:.1e} |")
    met = sum(r["after"] >= GOAL for r in rows)
    lines += ["", f"**Goal** (int8 ≥ {GOAL}x float32 for every CNN): {met} of {len(rows)} met on this CPU."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(list_models(study="cnn")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--load", default="nothing else running.", help="What else ran on the machine.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/int8.md"))
    args = parser.parse_args()
    ds = data.load("mnist")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(m, ds, args.rounds, Path(tmp)) for m in args.models.split(",")]
    text = render(rows, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
