"""What Ray costs a zoo build, and what the whole zoo x 5 seeds would take on k machines.

    python scripts/bench_build.py [--model mlp3] [--epochs 8] [--jobs 4] [--rounds 2] [--load TEXT]
                                  [--out benchmarks/build.md]

1. Measured: the same short build (``--jobs`` seeds of ``--model`` for ``--epochs`` epochs on all
   training images; each job trains, exports with int8 and evaluates) as ``mnistzoo build`` runs it,
   in a fresh process and a fresh runs directory each time, on three engines: local (one job after
   another, TensorFlow on every core), local Ray with 1 worker (``--cpus-per-job`` = all cores) and
   with one worker per core (``--cpus-per-job 1``). The engines take turns within each round (the
   machine's speed drifts), so each ratio is formed within a round; the table gives the median.
   Ray's overhead per job is (Ray 1 worker - local) / jobs, over local's time per job: it counts
   starting Ray and its workers, their TensorFlow import, and moving the files. To
   show where it goes, each engine's training seconds per epoch (``history.json``) and each job's
   seconds outside training are reported as well.
2. On paper: the whole zoo x 5 seeds from the measured per-model costs (``results/<id>/seed*/card.json``:
   training wall time on a 2-core machine) plus the per-job export/evaluate time measured here;
   CPU-hours and wall time on k machines of this size (independent jobs, longest first; a job
   cannot be split, so the longest bounds the wall time).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from mnistzoo._env import environment
from mnistzoo.zoo import get_model, list_models
from mnistzoo.zoo.stats import model_stats

ROOT = Path(__file__).resolve().parent.parent
SEEDS_ON_PAPER, MACHINES = 5, (1, 4, 16)


def engines(cores: int) -> dict[str, list[str]]:
    return {"local": ["--engine", "local"],
            "Ray, 1 worker": ["--engine", "ray", "--cpus-per-job", str(cores)],
            f"Ray, {cores} workers": ["--engine", "ray", "--cpus-per-job", "1"]}


def timed_build(model: str, epochs: int, jobs: int, engine: list[str]) -> tuple[float, list[float], list[float]]:
    """Wall seconds of one ``mnistzoo build`` in a fresh process and runs directory, each job's seconds outside
    training (export, evaluation, and for Ray its overheads) and every epoch's training seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-build-") as runs:
        cmd = [sys.executable, "-m", "mnistzoo", "build", model, "--seeds", f"0-{jobs - 1}", "--epochs", str(epochs),
               "--runs", runs, "--json", *engine]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
        cards = [json.loads(p.read_text()) for p in Path(runs).glob("*/seed*/card.json")]
        epochs_s = [row["seconds"] for p in Path(runs).glob("*/seed*/history.json") for row in json.loads(p.read_text())]
    training = {c["seed"]: c["wall_seconds"] for c in cards}
    return wall, [o["seconds"] - training[o["seed"]] for o in json.loads(proc.stdout)], epochs_s


def training_costs() -> dict[str, float]:
    """Per model: mean full-recipe training wall seconds over its committed seeds (2-core machines)."""
    costs = {}
    for model_id in list_models():
        walls = [c["wall_seconds"] for p in sorted((ROOT / "results" / model_id).glob("seed*/card.json"))
                 if (c := json.loads(p.read_text()))["recipe_is_original"]]
        if walls:
            costs[model_id] = statistics.mean(walls)
    return costs


def makespan(durations: list[float], machines: int) -> float:
    """Wall time of independent jobs on ``machines`` (longest first onto the least loaded machine)."""
    loads = [0.0] * machines
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp3")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--load", default="nothing else ran on the machine",
                        help="what else ran during the measurement, for the record")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "build.md")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    configs = engines(cores)
    walls: dict[str, list[float]] = {name: [] for name in configs}
    outside: dict[str, list[float]] = {name: [] for name in configs}
    epochs_s: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(args.rounds):
        names = list(configs)[r % len(configs):] + list(configs)[:r % len(configs)]  # rotate who goes first
        for name in names:
            wall, others, epoch_seconds = timed_build(args.model, args.epochs, args.jobs, configs[name])
            walls[name].append(wall)
            outside[name] += others
            epochs_s[name] += epoch_seconds
            print(f"round {r + 1}: {name}: {wall:.1f} s", flush=True)
    local = walls["local"]
    ratio = {name: [w / l for w, l in zip(ws, local)] for name, ws in walls.items()}
    overhead = [(w - l) / args.jobs / (l / args.jobs) for w, l in zip(walls["Ray, 1 worker"], local)]
    env = environment()
    lines = [
        "# Zoo builds: the local engine against Ray, and the whole zoo on paper", "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/bench_build.py --model {args.model} "
        f"--epochs {args.epochs} --jobs {args.jobs} --rounds {args.rounds}` on {env['cpu']} ({cores} cores), GPU: "
        f"{env['gpu'] or 'none'}; Ray {_version('ray')}, TensorFlow {env['tensorflow']}. Load: {args.load}.", "",
        f"The build: {args.jobs} jobs, seeds 0-{args.jobs - 1} of {args.model} for {args.epochs} epochs on all "
        f"60,000 training images; each job trains, exports (verified, with int8) and evaluates. Each engine ran "
        f"it {args.rounds} times, taking turns, each time in a fresh process and runs directory. Besides training, "
        f"a local job spent {statistics.median(outside['local']):.1f} s (median) on export and evaluation. Where the "
        "time goes: each epoch's training seconds (`history.json`; the median, and the 90th percentile for the "
        "slow epochs) and each job's seconds outside training (worker start, export, evaluation, moving files).",
        "", "| engine | wall s (median) | rounds | jobs/hour | vs local | s/epoch median | p90 | s/job outside "
        "training |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, ws in walls.items():
        deciles = statistics.quantiles(epochs_s[name], n=10)
        lines.append(f"| {name} | {statistics.median(ws):.1f} | {', '.join(f'{w:.1f}' for w in ws)} | "
                     f"{3600 * args.jobs / statistics.median(ws):.0f} | {statistics.median(ratio[name]):.2f}x | "
                     f"{statistics.median(epochs_s[name]):.2f} | {deciles[-1]:.2f} | "
                     f"{statistics.median(outside[name]):.1f} |")
    goal = "met" if statistics.median(overhead) <= 0.05 else "NOT met"
    lines += ["", f"**Ray's overhead per job** (1 worker against local, same work one job at a time): "
                  f"{100 * statistics.median(overhead):+.1f} % of a local job (rounds: "
                  f"{', '.join(f'{100 * o:+.1f} %' for o in overhead)}); goal <= 5 %: {goal}.", ""]
    lines += _on_paper(statistics.median(outside["local"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _on_paper(export_eval: float) -> list[str]:
    """The whole zoo x 5 seeds from the committed per-model training costs."""
    costs = training_costs()
    rate = {m: costs[m] / model_stats(get_model(m)).macs for m in costs}  # seconds per MAC of training
    cnn_rate = statistics.median(r for m, r in rate.items() if m.startswith("cnn"))
    estimated = [m for m in list_models() if m not in costs]
    per_model = {m: costs.get(m, model_stats(get_model(m)).macs * cnn_rate) + export_eval for m in list_models()}
    jobs = [s for s in per_model.values() for _ in range(SEEDS_ON_PAPER)]
    machine_hours = sum(jobs) / 3600
    longest = max(per_model, key=per_model.get)
    lines = ["## The whole zoo x 5 seeds, on paper", "",
             f"Per-model cost: the mean full-recipe training wall time of its committed seeds on a 2-core machine "
             f"(`results/<id>/seed*/card.json`), plus {export_eval:.0f} s of export and evaluation per job (measured "
             f"above). "
             + (f"Not trained yet, estimated from MACs at the CNNs' median seconds per MAC: {', '.join(estimated)}. "
                if estimated else "")
             + f"{len(per_model)} models x {SEEDS_ON_PAPER} seeds = {len(jobs)} independent jobs: "
               f"**{machine_hours:.1f} machine-hours = {2 * machine_hours:.1f} CPU-hours** (2 cores each). The "
               f"longest job, {longest}, takes {per_model[longest] / 3600:.2f} h: no number of machines finishes "
               "sooner.", "",
             "| machines (2 cores each) | wall time | bound by |", "|---:|---:|---|"]
    for k in MACHINES:
        span = makespan(jobs, k)
        bound = "the longest job" if span <= per_model[longest] * 1.001 else "total work / k"
        lines.append(f"| {k} | {span / 3600:.1f} h | {bound} |")
    lines += ["", "One GPU: not measured. The one GPU machine lent to a session (an H100) had no TensorFlow, "
              "and could not fetch it (no network; 64 MiB carried per call).", ""]
    return lines


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
