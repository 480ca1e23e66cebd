"""Train models with their full recipe (resumably), export them to verified ONNX, evaluate the
files, and copy their records into ``results/<id>/``.

    python scripts/build_zoo.py [ID ...] [--runs DIR]
    python scripts/build_zoo.py --save-partial [--runs DIR]

Default: every model in the zoo. A finished run is not retrained, exported or evaluated again; a
killed one resumes. Long runs outlive a session through ``results/<id>/partial/``: ``--save-partial``
copies each unfinished run's ``checkpoint.keras`` and ``state.json`` there (commit them), and a build
on a fresh machine resumes from them; the finished run's records replace ``partial/``. Only small records are copied (no weights): card, history, curves, export and
eval records, and the violin plot of the trained kernels. Then `mnistzoo report --runs results
--out docs` rebuilds the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mnistzoo._io import atomic_path
from mnistzoo.evaluate import evaluate
from mnistzoo.export import export, record_passed
from mnistzoo.records import ExportRecord, read_record, write_record
from mnistzoo.report import plot_kernels
from mnistzoo.runs import runs_dir
from mnistzoo.train import train
from mnistzoo.zoo import get_model, list_models

import keras  # noqa: E402 - after mnistzoo, which quiets TensorFlow

RESULTS = Path(__file__).resolve().parent.parent / "results"
PARTIAL, PARTIAL_FILES = "partial", ("checkpoint.keras", "state.json")
RECORDS = ("card.json", "history.json", "curves.png", "export.json", "eval.json", "kernels.png")
EVAL_BATCH_SIZES = [1, 256]


def evaluate_run(run_dir: Path) -> None:
    """Write ``eval.json`` (accuracy, parity, latency) and ``kernels.png`` for an exported run."""
    record = evaluate(run_dir / "model.onnx", batch_sizes=EVAL_BATCH_SIZES)
    record["path"] = f"{run_dir.name}/model.onnx"  # relative to the runs directory, not this machine's path
    record["parity"]["checkpoint"] = f"{run_dir.name}/model.keras"
    write_record(run_dir / "eval.json", record)
    plot_kernels(keras.models.load_model(run_dir / "model.keras"), f"{run_dir.name}: hidden-layer kernels",
                 run_dir / "kernels.png")


def collect(run_dir: Path, model_id: str) -> Path:
    """Copy a finished run's records to ``results/<id>/``; its resumable state there is no longer needed."""
    dest = RESULTS / model_id
    dest.mkdir(parents=True, exist_ok=True)
    for name in RECORDS:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    shutil.rmtree(dest / PARTIAL, ignore_errors=True)
    return dest


def save_partial(runs: Path | None) -> None:
    """Copy every unfinished run's resumable state (checkpoint + state.json) to ``results/<id>/partial/``."""
    for state in sorted(runs_dir(runs).glob("*@*/state.json")):
        run = state.parent
        if (run / "card.json").exists():
            continue
        dest = RESULTS / run.name.split("@")[0] / PARTIAL
        dest.mkdir(parents=True, exist_ok=True)
        for name in PARTIAL_FILES:  # the checkpoint first: state.json is the commit point
            with atomic_path(dest / name) as tmp:
                shutil.copyfile(run / name, tmp)
        print(f"{run.name}: {len(json.loads(state.read_text())['history'])} epochs saved -> {dest}", flush=True)


def restore_partial(model_id: str, runs: Path | None) -> None:
    """Seed an empty run directory from ``results/<id>/partial/`` so training resumes where it stopped."""
    source, run = RESULTS / model_id / PARTIAL, runs_dir(runs) / get_model(model_id).name
    if (source / "state.json").exists() and not (run / "state.json").exists() and not (run / "card.json").exists():
        run.mkdir(parents=True, exist_ok=True)
        for name in PARTIAL_FILES:
            shutil.copyfile(source / name, run / name)
        print(f"{model_id}: resuming from {source}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", help="model ids (default: all)")
    parser.add_argument("--runs", type=Path, default=None, help="runs directory (default: $MNISTZOO_HOME/runs)")
    parser.add_argument("--save-partial", action="store_true", help="only copy unfinished runs' state to results/")
    args = parser.parse_args()
    if args.save_partial:
        return save_partial(args.runs)
    for model_id in args.ids or list_models():
        restore_partial(model_id, args.runs)
        result = train(model_id, out=args.runs, on_epoch=lambda row, _id=model_id: print(_id, row, flush=True))
        if not result.card["recipe_is_original"]:
            raise SystemExit(f"{model_id}: {result.run_dir} was not trained with the full recipe")
        record = result.run_dir / "export.json"
        if not (record.exists() and record_passed(read_record(record, ExportRecord, "re-export it"))):
            export(model_id, runs=args.runs, quantize="int8")
        if not (result.run_dir / "eval.json").exists():
            evaluate_run(result.run_dir)
        print(f"{model_id}: test accuracy {result.card['results']['test_accuracy']:.4f} -> "
              f"{collect(result.run_dir, model_id)}", flush=True)


if __name__ == "__main__":
    main()
