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
settings (``timing.tune``; "before" as before, without the quantization-move switch), and "after" once more
with those settings but the whole batch in one call (what tuning gained by smaller calls, ``chunk``), the four
taking turns within each round; the table gives the median over rounds of int8 throughput over float32. Every
int8 file is also checked against ``onnx.reference.ReferenceEvaluator`` on 16 test images.

Where int8 cannot pay, two measurements say why. The kernel table times onnxruntime's own matmul kernels alone,
float32 ``MatMul`` against ``MatMulInteger`` for each int8 type pairing, at a square shape and at the CNNs' shapes.
The profile columns come from onnxruntime's profiler, the three files taking turns at their settings in several
rounds: per Keras layer, the time of its matmul kernel (convolution or dense) in each file, and the time of
everything else. A mix takes each layer at its fastest kernel of the three plus the least time any of the three
spent on everything else; ``bound`` is the most such a mix could reach over float32: a file's timed ratio times
its profiled time over the mix's, the largest over the three files, so it is never below a timed ratio unless the
profile disagrees with the timing (the table flags any such row). ``ceiling`` counts everything else (pooling,
layout reorders, quantization) as free.

Making the files needs TensorFlow; timing them does not. ``--prepare`` writes them (and ``prepared.json``)
into a folder, and ``--prepared`` times them on a machine with only onnxruntime and onnx, such as one whose
CPU has int8 dot-product instructions (VNNI) that this one lacks.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from mnistzoo import data
from mnistzoo._env import cpu_features, environment, int8_features
from mnistzoo.errors import MnistZooError
from mnistzoo.pretrained import locate
from mnistzoo.reference import reference_max_diff
from mnistzoo.runtime import SessionSettings, infer, make_session, predict_onnx
from mnistzoo.timing import batch_of, interleaved_throughput, median_ratio, settle, time_runs, tune
from mnistzoo.zoo import get_model, list_models
from mnistzoo.zoo.stats import model_stats

BATCH = 256
GOAL = 1.2
VARIANTS = ("fp32", "before", "after")  # "after" is the only one timed with the quantization-move switch
MANIFEST = "prepared.json"
PROFILE_ROUNDS, PROFILED = 5, 10  # profiling rounds; batches a file runs back to back in each round
# Operators that do a layer's multiply-adds, in float32 or int8, as onnxruntime's profiler names them after fusion.
MATMUL_OPS = {"Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "QLinearConv", "QLinearMatMul",
              "QGemm", "MatMulInteger", "MatMulIntegerToFloat", "ConvInteger"}
PAIRINGS = {"u8s8": (np.uint8, np.int8), "u8u8": (np.uint8, np.uint8), "s8s8": (np.int8, np.int8),
            "s8u8": (np.int8, np.uint8)}  # activation x weight types of MatMulInteger
# (rows, depth, columns): square; a 3x3x32 -> 64 convolution over 24x24 positions of 64 images; a 9216 -> 128 dense
# layer at batch 256.
KERNEL_SHAPES = ((1024, 1024, 1024), (36864, 288, 64), (256, 9216, 128))


def prepare(model_ids: list[str], ds: data.Dataset, directory: Path) -> None:
    """Write each model's float32 file (trained where at hand, else seeded random weights) and its two int8
    files, quantized from the graph the export quantizes (BatchNorm unfolded), into ``directory``, with
    ``prepared.json``: where each float32 file came from, and this machine."""
    from mnistzoo import quantize

    from _bench import random_weights, unfolded

    calibration, check, labels = quantize.calibration_images(ds)
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
            quantize.quantize_int8(graph, directory / f"{model_id}.before.onnx", calibration, check, known,
                                   float_first_conv=False)
            quantize.quantize_int8(graph, directory / f"{model_id}.after.onnx", calibration, check, known)
    (directory / MANIFEST).write_text(json.dumps({"made_on": environment(), "origins": origins}, indent=1))


def kernel_gops(rounds: int) -> dict[tuple[int, int, int], dict[str, float]]:
    """onnxruntime's matmul kernels alone, all cores: for each of :data:`KERNEL_SHAPES`, the GOP/s of float32
    ``MatMul`` and of ``MatMulInteger`` in each of :data:`PAIRINGS`, the median over ``rounds`` interleaved rounds."""
    rng = np.random.default_rng(0)
    kinds = {"fp32": (np.float32, np.float32), **PAIRINGS}
    result = {}
    for rows, depth, cols in KERNEL_SHAPES:
        runs, feeds = {}, {}
        for kind, (a_type, b_type) in kinds.items():
            a = rng.integers(0, 100, (rows, depth)).astype(a_type)
            b = rng.integers(0, 100, (depth, cols)).astype(b_type)
            node = helper.make_node("MatMul" if kind == "fp32" else "MatMulInteger", ["a", "b"], ["c"])
            graph = helper.make_graph(
                [node], kind, [helper.make_tensor_value_info("a", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)],
                [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT if kind == "fp32" else
                                               onnx.TensorProto.INT32, (rows, cols))],
                [onnx.numpy_helper.from_array(b, "b")])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
            runs[kind], feeds[kind] = make_session(model), {"a": a}
        seconds = {kind: [] for kind in kinds}
        for _ in range(rounds):
            for kind, session in runs.items():
                settle()
                seconds[kind].append(float(np.median(time_runs(lambda: session.run(None, feeds[kind]), 5, 1, None))))
        result[(rows, depth, cols)] = {kind: 2 * rows * depth * cols / statistics.median(t) / 1e9
                                       for kind, t in seconds.items()}
    return result


def matmul_profiles(files: dict[str, Path], settings: dict[str, SessionSettings], images: np.ndarray,
                    scratch: Path) -> list[dict[str, dict]]:
    """onnxruntime's profile of each file at its settings, in :data:`PROFILE_ROUNDS` rounds; within a round the
    files take turns, each running :data:`PROFILED` batches (:data:`BATCH` images) back to back after one untimed.
    For each round and file: the median over its batches of the ms a batch in all operators, and in each layer's
    matmul-type nodes (:data:`MATMUL_OPS`), by the Keras layer name that the converter puts in a node's name."""
    sessions = {name: make_session(path, settings=settings[name], profile=str(scratch / name))
                for name, path in files.items()}
    feed, per_round = batch_of(images, BATCH), PROFILED + 1
    previous = None
    for _ in range(PROFILE_ROUNDS):
        for session in sessions.values():
            settle(previous)
            for _ in range(per_round):
                infer(session, feed)
            previous = session
    rounds: list[dict[str, dict]] = [{} for _ in range(PROFILE_ROUNDS)]
    for name, session in sessions.items():
        events = json.loads(Path(session.end_profiling()).read_text())
        calls = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
        starts = calls[::len(calls) // (PROFILE_ROUNDS * per_round)]  # each batch's first call
        totals = np.zeros(len(starts))
        matmuls: dict[str, np.ndarray] = collections.defaultdict(lambda: np.zeros(len(starts)))
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                batch = bisect.bisect_right(starts, e["ts"]) - 1
                totals[batch] += e["dur"]
                if e["args"]["op_name"] in MATMUL_OPS:  # "[fused ]<model>/<layer>/..."
                    matmuls[e["name"].split("/")[1] if "/" in e["name"] else e["name"]][batch] += e["dur"]
        for r, profile in enumerate(rounds):
            kept = slice(r * per_round + 1, (r + 1) * per_round)  # the round's batches but its first
            profile[name] = {"total": float(np.median(totals[kept])) / 1e3,
                             "matmuls": {layer: float(np.median(us[kept])) / 1e3 for layer, us in matmuls.items()}}
    return rounds


def mix_gains(profiles: dict[str, dict]) -> dict[str, dict[str, float]]:
    """For one round's profiles: each file's time over the least a mix of the files could take (``bound``: each
    float32 layer at the fastest of its matmul kernels in any file, plus the least time any file spent on all other
    operators), and over that mix's matmul time alone (``ceiling``: all other operators free)."""
    fastest = sum(min(p["matmuls"].get(layer, ms) for p in profiles.values())
                  for layer, ms in profiles["fp32"]["matmuls"].items())
    other = min(p["total"] - sum(p["matmuls"].values()) for p in profiles.values())
    return {"bound": {name: p["total"] / (fastest + other) for name, p in profiles.items()},
            "ceiling": {name: p["total"] / fastest for name, p in profiles.items()}}


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
    with tempfile.TemporaryDirectory() as scratch:
        rounds = matmul_profiles(files, {name: sessions[name].mnistzoo_settings for name in files}, ds.x_test,
                                 Path(scratch))
    gains = [mix_gains(profiles) for profiles in rounds]
    timed = {"fp32": 1.0, **ratio}
    row |= {"fp32_ms": statistics.median(p["fp32"]["total"] for p in rounds),
            "matmul_share": statistics.median(sum(p["fp32"]["matmuls"].values()) / p["fp32"]["total"] for p in rounds),
            "profiled": statistics.median(p["fp32"]["total"] / p["after"]["total"] for p in rounds),
            **{key: max(timed[name] * statistics.median(g[key][name] for g in gains) for name in files)
               for key in ("bound", "ceiling")}}
    if trained:
        acc = {name: float((predict_onnx(make_session(path), ds.x_test).argmax(1) == ds.y_test).mean())
               for name, path in files.items()}
        row |= {"fp32_acc": acc["fp32"], "before_drop": acc["before"] - acc["fp32"],
                "after_drop": acc["after"] - acc["fp32"]}
    return row


def render_kernels(gops: dict[tuple[int, int, int], dict[str, float]]) -> list[str]:
    lines = ["## onnxruntime's matmul kernels alone", "",
             "GOP/s (2 operations a multiply-add) of float32 `MatMul` and of `MatMulInteger` for each activation x "
             "weight type pairing, all cores, median over rounds; `best int8`: the fastest pairing over float32.", "",
             f"| rows x depth x columns | float32 | {' | '.join(PAIRINGS)} | best int8 |",
             "|---|---:|" + "---:|" * (len(PAIRINGS) + 1)]
    for (rows, depth, cols), rate in gops.items():
        best = max(rate[p] for p in PAIRINGS)
        lines.append(f"| {rows} x {depth} x {cols} | {rate['fp32']:.1f} | "
                     f"{' | '.join(f'{rate[p]:.1f}' for p in PAIRINGS)} | {best / rate['fp32']:.2f}x |")
    return lines + [""]


def render(rows: list[dict], args: argparse.Namespace, made_on: dict | None, gops: dict) -> str:
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
        f"Profiled (onnxruntime's profiler in {PROFILE_ROUNDS} rounds; in each the three files take turns, each "
        f"running {PROFILED} batches back to back at its settings after one untimed; median over batches, then over "
        "rounds): `float32 ms` a batch, the share of it in the matmul kernels (convolutions, dense layers), and "
        "`profiled` int8 after over float32 in time a batch, to set beside the timed ratio. A mix of the three "
        "files takes each layer at the fastest of its three matmul kernels (float32, int8 before, int8 after) plus "
        "the least time any file spent on all other operators. `bound`: for each file, its timed ratio (float32: "
        "1) times its profiled time over the mix's, in the same round; the largest of the three: the most such a "
        "mix could reach over float32. `ceiling`: the same with all other operators (pooling, layout reorders, "
        "quantization) free.", "",
        *render_kernels(gops),
        "## The CNNs", "",
        f"| model | MACs/image | weights | float32 images/s | int8 before | after, one call | int8 after | "
        f"≥ {GOAL}x | calls of | accuracy change before | after | reference | float32 ms | matmul share | profiled | "
        "bound | ceiling |", "|---|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc = (f"{100 * r['before_drop']:+.2f} pp | {100 * r['after_drop']:+.2f} pp" if r["trained"] else "— | —")
        weights = f"trained ({r['trained']})" if r["trained"] else "random"
        calls = " / ".join(str(r["chunk"][name] or "—") for name in ("fp32", "after"))
        lines.append(f"| {r['model']} | {r['macs']:,} | {weights} | "
                     f"{r['fp32_ips']:,.0f} | {r['before']:.2f}x | {r['one_call']:.2f}x | {r['after']:.2f}x | "
                     f"{'yes' if r['after'] >= GOAL else 'NO'} | {calls} | {acc} | {r['reference']:.1e} | "
                     f"{r['fp32_ms']:.1f} | {100 * r['matmul_share']:.0f} % | {r['profiled']:.2f}x | "
                     f"{r['bound']:.2f}x | {r['ceiling']:.2f}x |")
    met = sum(r["after"] >= GOAL for r in rows)
    lines += ["", f"**Goal** (int8 ≥ {GOAL}x float32 for every CNN): {met} of {len(rows)} met on this CPU."]
    missed = [r for r in rows if r["after"] < GOAL]
    if missed:
        out = [r["model"] for r in missed if r["bound"] < GOAL]
        free = [r["model"] for r in missed if r["ceiling"] < GOAL]
        lines.append(f"Of the {len(missed)} misses, {len(out)} have a bound below {GOAL}x (no mix of float32 and "
                     f"int8 layers gains enough on this CPU) and {len(free)} even a ceiling below {GOAL}x.")
    broken = [r["model"] for r in rows if r["bound"] < max(1.0, r["before"], r["after"])]
    lines.append(f"**Not a bound** (below a timed ratio of the files it mixes): {', '.join(broken)}." if broken else
                 "Every row's bound is at or above the timed ratios of the files it mixes.")
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
        gops = kernel_gops(args.rounds)
        rows = []
        for model_id in args.models.split(","):
            rows.append(measure(model_id, manifest["origins"][model_id], ds, args.rounds, directory, args.threads))
            print(f"{model_id}: int8 {rows[-1]['after']:.2f}x float32", file=sys.stderr, flush=True)
    text = render(rows, args, manifest["made_on"] if args.prepared else None, gops)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
