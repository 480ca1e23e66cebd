"""Cold-start cost of the inference paths: wall time and peak memory of fresh processes, against the floor.

    python scripts/bench_startup.py [--runs 7] [--before REV] [--out benchmarks/startup.md]

Each case runs in a new Python process (``-c``), ``--runs`` times, the cases taking turns round by
round so that a slow phase of the machine hits all of them alike. The floor is importing onnxruntime
and numpy, which any ONNX inference needs. With ``--before REV`` the same paths also run from that
git revision's source tree (a temporary worktree on PYTHONPATH, same interpreter and libraries).
Peak memory is the child's own high-water mark of resident memory (``VmHWM``, read at exit: a forked
child's ``ru_maxrss`` would include its parent's).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from mnistzoo._env import cpu_name

ROOT = Path(__file__).resolve().parent.parent
CLI = "import sys; sys.argv = ['mnistzoo', *{args!r}]; from mnistzoo.cli import main; main()"
GOALS = {"load_pretrained + predict": 3.0, "mnistzoo list": 3.0, "mnistzoo show": 3.0}  # time ratio to the floor


def cases(image: Path) -> dict[str, str]:
    return {
        "floor: import onnxruntime, numpy": "import onnxruntime, numpy",
        "load_pretrained + predict": "from mnistzoo import load_pretrained; "
                                     f"print(load_pretrained('mlp3_dropout_bn').predict({str(image)!r}))",
        "mnistzoo predict": CLI.format(args=["predict", "mlp3_dropout_bn", str(image)]),
        "mnistzoo list": CLI.format(args=["list"]),
        "mnistzoo show": CLI.format(args=["show", "cnn5_k5_reg"]),
        "mnistzoo --help": CLI.format(args=["--help"]),
    }


PEAK = ("import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('\\nVmHWM ' + next(l.split()[1] for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')) + '\\n'))\n")
OLD_TREE = ("import sys\n"  # the editable install's import hook would load today's package: drop it
            "sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__module__]\n"
            "sys.path.insert(0, {tree!r})\n")


def measure(code: str, tree: str | None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh ``python -c code`` (from the source ``tree`` if given)."""
    script = PEAK + (OLD_TREE.format(tree=tree) if tree else "") + code
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {code}\n{proc.stderr[-2000:]}")
    return wall, int(proc.stderr.rsplit("VmHWM ", 1)[1].split()[0]) / 1024


def digit_png(directory: Path) -> Path:
    from PIL import Image

    from mnistzoo import data

    path = directory / "digit.png"
    Image.fromarray(data.load("mnist").x_test[0]).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", default=None, help="a git revision to measure the same paths from")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "startup.md")
    parser.add_argument("--load", default="nothing else running", help="what else ran on the machine meanwhile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = digit_png(tmp)
        trees = {"now": None}
        if args.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp / "before"), args.before],
                           check=True, capture_output=True)
            trees[f"before ({args.before})"] = str(tmp / "before")
        try:
            samples = run_rounds(cases(image), trees, args.runs)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "before")],
                               check=True, capture_output=True)
    report = render(samples, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


def run_rounds(paths: dict[str, str], trees: dict[str, str | None], runs: int) -> dict:
    """``samples[(tree, case)] = [(wall, rss), ...]``, every case of every tree once per round."""
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for tree, pythonpath in trees.items():
            for case, code in paths.items():
                if tree != "now" and case.startswith("floor"):
                    continue
                samples.setdefault((tree, case), []).append(measure(code, pythonpath))
    return samples


def render(samples: dict, args: argparse.Namespace) -> str:
    floor = samples["now", "floor: import onnxruntime, numpy"]
    floor_wall, floor_rss = statistics.median(w for w, _ in floor), statistics.median(r for _, r in floor)
    lines = [
        "# Start-up: cold processes against the onnxruntime + numpy floor",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by `python scripts/bench_startup.py "
        f"{' '.join(shlex.quote(a) for a in sys.argv[1:])}` on {cpu_name()} ({os.cpu_count()} cores), Python "
        f"{platform.python_version()}; machine load: {args.load}. Each cell: the median of "
        f"{args.runs} fresh processes, the cases taking turns round by round; the ratios are to the floor "
        "measured in the same rounds.",
        "",
        "| code | path | wall s | peak RSS MB | time ratio | memory ratio | goal (time) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for (tree, case), rows in samples.items():
        wall, rss = statistics.median(w for w, _ in rows), statistics.median(r for _, r in rows)
        goal = GOALS.get(case)
        met = "" if goal is None or tree != "now" else (f"≤ {goal:g}x: {'met' if wall / floor_wall <= goal else 'MISSED'}")
        lines.append(f"| {tree} | {case} | {wall:.2f} | {rss:.0f} | {wall / floor_wall:.1f}x | {rss / floor_rss:.1f}x "
                     f"| {met} |")
    pretrained = samples["now", "load_pretrained + predict"]
    rss_ratio = statistics.median(r for _, r in pretrained) / floor_rss
    lines += ["", f"Pretrained path memory: {rss_ratio:.1f}x the floor (goal ≤ 3x: {'met' if rss_ratio <= 3 else 'MISSED'})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
