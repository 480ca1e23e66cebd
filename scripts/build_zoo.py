"""Train models with their full recipe (resumably), export them to verified ONNX, evaluate the
files, and copy their records into ``results/<id>/``.

    python scripts/build_zoo.py [ID ...] [--runs DIR]

Default: every model in the zoo. A finished run is not retrained, exported or evaluated again; a
killed one resumes. Only small records are copied (no weights): card, history, curves, export and
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
from mnistzoo.export import export
from mnistzoo.report import plot_kernels
from mnistzoo.train import train
from mnistzoo.zoo import list_models

import keras  # noqa: E402 - after mnistzoo, which quiets TensorFlow

RESULTS = Path(__file__).resolve().parent.parent / "results"
RECORDS = ("card.json", "history.json", "curves.png", "export.json", "eval.json", "kernels.png")
EVAL_BATCH_SIZES = [1, 256]


def evaluate_run(run_dir: Path) -> None:
    """Write ``eval.json`` (accuracy, parity, latency) and ``kernels.png`` for an exported run."""
    record = evaluate(run_dir / "model.onnx", batch_sizes=EVAL_BATCH_SIZES)
    record["model"] = f"{run_dir.name}/model.onnx"  # relative to the runs directory, not this machine's path
    record["parity"]["checkpoint"] = f"{run_dir.name}/model.keras"
    with atomic_path(run_dir / "eval.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    plot_kernels(keras.models.load_model(run_dir / "model.keras"), f"{run_dir.name}: hidden-layer kernels",
                 run_dir / "kernels.png")


def collect(run_dir: Path, model_id: str) -> Path:
    """Copy a finished run's records to ``results/<id>/``."""
    dest = RESULTS / model_id
    dest.mkdir(parents=True, exist_ok=True)
    for name in RECORDS:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", help="model ids (default: all)")
    parser.add_argument("--runs", type=Path, default=None, help="runs directory (default: $MNISTZOO_HOME/runs)")
    args = parser.parse_args()
    for model_id in args.ids or list_models():
        result = train(model_id, out=args.runs, on_epoch=lambda row, _id=model_id: print(_id, row, flush=True))
        if not result.card["recipe_is_original"]:
            raise SystemExit(f"{model_id}: {result.run_dir} was not trained with the full recipe")
        if not (result.run_dir / "export.json").exists():
            export(model_id, runs=args.runs, quantize="int8")
        if not (result.run_dir / "eval.json").exists():
            evaluate_run(result.run_dir)
        print(f"{model_id}: test accuracy {result.card['results']['test_accuracy']:.4f} -> "
              f"{collect(result.run_dir, model_id)}", flush=True)


if __name__ == "__main__":
    main()
