"""Where int8 pays: each CNN's int8 file against its float32 file at batch 256, before and after the float32
first convolution and the calls of fewer images, on this CPU.

    python scripts/bench_int8.py [--models cnn2_k3,...] [--rounds 5] [--load TEXT] [--out benchmarks/int8.md]
    python scripts/bench_int8.py --prepare DIR [--models ...]      # the files only (needs TensorFlow)
    python scripts/bench_int8.py --prepared DIR [--rounds 5] ...   # time those files (onnxruntime and onnx only)

For each model (default: every CNN) the float32 file is its trained seed-0 export where one is at hand (zoo
home, starter pack), else the architecture with seeded random weights (speed does not depend on the weights;
accuracy is then not reported). Two int8 files are made with ``mnistzoo.export.quantize_int8`` from the graph
the export quantizes (BatchNorm not folded): "after" as the export makes it now, and "before" with the first
convolution in int8 like every other layer. Each file is timed at batch 256 with its fastest onnxruntime
settings (``runtime.tune``; "before" as before, without the quantization-move switch), and "after" once more
with those settings but the whole batch in one call (what tuning gained by smaller calls, ``chunk``), the four
taking turns within each round; the table gives the median over rounds of int8 throughput over float32. Every
int8 file is also checked against ``onnx.reference.ReferenceEvaluator`` on 16 test images.

Making the files needs TensorFlow; timing them does not. ``--prepare`` writes them (and ``prepared.json``)
into a folder, and ``--prepared`` times them on a machine with only onnxruntime and onnx, such as one whose
CPU has int8 dot-product instructions (VNNI) that this one lacks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from dataclasses import replace
from pathlib import Path

from mnistzoo import data
from mnistzoo._env import cpu_features, environment, int8_features
from mnistzoo.errors import MnistZooError
from mnistzoo.pretrained import locate
from mnistzoo.reference import reference_max_diff
from mnistzoo.runtime import interleaved_throughput, make_session, median_ratio, predict_onnx, tune
from mnistzoo.zoo import get_model, list_models
from mnistzoo.zoo.stats import model_stats

BATCH = 256
GOAL = 1.2
VARIANTS = ("fp32", "before", "after")  # "after" is the only one timed with the quantization-move switch
MANIFEST = "prepared.json"


def prepare(model_ids: list[str], ds: data.Dataset, directory: Path) -> None:
    """Write each model's float32 file (trained where at hand, else seeded random weights) and its two int8
    files, quantized from the graph the export quantizes (BatchNorm unfolded), into ``directory``, with
    ``prepared.json``: where each float32 file came from, and this machine."""
    from mnistzoo import export as exporter

    from _bench import random_weights, unfolded

    calibration, check, labels = exporter.calibration_images(ds)
    origins = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model_id in model_ids:
            try:
                (onnx_path, origins[model_id]), (keras_path, _) = locate(model_id), locate(model_id, "keras")
            except MnistZooError:
                (onnx_path, keras_path), origins[model_id] = random_weights(model_id, Path(scratch)), None
            (directory / f"{model_id}.fp32.onnx").write_bytes(onnx_path.read_bytes())
            graph = unfolded(keras_path)
            known = labels if origins[model_id] else None  # random weights: no accuracy to keep
            exporter.quantize_int8(graph, directory / f"{model_id}.before.onnx", calibration, check, known,
                                   float_first_conv=False)
            exporter.quantize_int8(graph, directory / f"{model_id}.after.onnx", calibration, check, known)
    (directory / MANIFEST).write_text(json.dumps({"made_on": environment(), "origins": origins}, indent=1))


def measure(model_id: str, trained: str | None, ds: data.Dataset, rounds: int, directory: Path,
            threads: int | None = None) -> dict:
    files = {name: directory / f"{model_id}.{name}.onnx" for name in VARIANTS}
    sessions = {name: tune(path, ds.x_test, [BATCH], threads=threads, quantized=name == "after")[BATCH]
                for name, path in files.items()}
    after = sessions["after"].mnistzoo_settings
    sessions["one_call"] = make_session(files["after"], settings=replace(after, chunk=None))
    ips = interleaved_throughput(sessions, ds.x_test, BATCH, rounds=rounds, seconds=0.5)
    ratio = {name: median_ratio(ips[name], ips["fp32"]) for name in ("before", "one_call", "after")}
    row = {"model": model_id, "trained": trained, "macs": model_stats(get_model(model_id)).macs, **ratio,
           "chunk": {name: sessions[name].mnistzoo_settings.chunk for name in ("fp32", "after")},
           "fp32_ips": statistics.median(ips["fp32"]),
           "reference": max(reference_max_diff(files[name], ds.x_test[:16]) for name in ("before", "after"))}
    if trained:
        acc = {name: float((predict_onnx(make_session(path), ds.x_test).argmax(1) == ds.y_test).mean())
               for name, path in files.items()}
        row |= {"fp32_acc": acc["fp32"], "before_drop": acc["before"] - acc["fp32"],
                "after_drop": acc["after"] - acc["fp32"]}
    return row


def render(rows: list[dict], args: argparse.Namespace, made_on: dict | None) -> str:
    env = environment()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = (f"scripts/bench_int8.py --rounds {args.rounds}" + (f" --threads {args.threads}" if args.threads else "")
               + (" --prepared DIR" if made_on else ""))
    made = (f" The files were made with `--prepare DIR` on {made_on['cpu']} (TensorFlow {made_on['tensorflow']}, "
            f"onnxruntime {made_on['onnxruntime']}) and timed here." if made_on else "")
    lines = [
        "# int8 against float32 at batch 256, before and after the float32 first convolution and smaller calls", "",
        f"Measured {when} by `{command}` on {env['cpu']} ({env['cores']} cores; "
        f"vector features: {', '.join(env['cpu_features']) or 'none listed'}; int8 dot-product instructions: "
        f"{', '.join(int8_features(cpu_features())) or 'none (no VNNI, no AMX)'}), onnxruntime {env['onnxruntime']}. "
        f"Load: {args.load}{made}", "",
        "Each file at its fastest onnxruntime settings; ratios are int8 images/s over float32 images/s within a "
        "round, median over rounds. `one call`: the int8 file after, with its settings but the whole batch in one "
        "call; `calls of`: the images per call tuning chose for float32 / int8 (`—`: the whole batch). "
        "Accuracy (10,000 test images) only for a trained run; otherwise the weights "
        "are seeded random, which does not change the speed. `reference`: the largest |onnxruntime - "
        "onnx.reference| probability difference of either int8 file on 16 test images.", "",
        f"| model | MACs/image | weights | float32 images/s | int8 before | after, one call | int8 after | "
        f"≥ {GOAL}x | calls of | accuracy change before | after | reference |",
        "|---|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for r in rows:
        acc = (f"{100 * r['before_drop']:+.2f} pp | {100 * r['after_drop']:+.2f} pp" if r["trained"] else "— | —")
        weights = f"trained ({r['trained']})" if r["trained"] else "random"
        calls = " / ".join(str(r["chunk"][name] or "—") for name in ("fp32", "after"))
        lines.append(f"| {r['model']} | {r['macs']:,} | {weights} | "
                     f"{r['fp32_ips']:,.0f} | {r['before']:.2f}x | {r['one_call']:.2f}x | {r['after']:.2f}x | "
                     f"{'yes' if r['after'] >= GOAL else 'NO'} | {calls} | {acc} | {r['reference']:.1e} |")
    met = sum(r["after"] >= GOAL for r in rows)
    lines += ["", f"**Goal** (int8 ≥ {GOAL}x float32 for every CNN): {met} of {len(rows)} met on this CPU."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(list_models(study="cnn")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="onnxruntime's threads at most (default: every core).")
    parser.add_argument("--load", default="nothing else running.", help="What else ran on the machine.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/int8.md"))
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--prepare", type=Path, metavar="DIR", help="Only write the files into DIR.")
    where.add_argument("--prepared", type=Path, metavar="DIR", help="Time the files --prepare wrote into DIR.")
    args = parser.parse_args()
    ds = data.load("mnist")
    if args.prepare:
        args.prepare.mkdir(parents=True, exist_ok=True)
        prepare(args.models.split(","), ds, args.prepare)
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.prepared or Path(tmp)
        if not args.prepared:
            prepare(args.models.split(","), ds, directory)
        manifest = json.loads((directory / MANIFEST).read_text())
        rows = []
        for model_id in args.models.split(","):
            rows.append(measure(model_id, manifest["origins"][model_id], ds, args.rounds, directory, args.threads))
            print(f"{model_id}: int8 {rows[-1]['after']:.2f}x float32", file=sys.stderr, flush=True)
    text = render(rows, args, manifest["made_on"] if args.prepared else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
