"""Train models with their full recipe (resumably), export them to verified ONNX, and copy their
records into ``results/<id>/``.

    python scripts/build_zoo.py [ID ...] [--runs DIR]

Default: every model in the zoo. A finished run is not retrained; a killed one resumes. Only small
records are copied (no weights).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mnistzoo.export import export
from mnistzoo.train import train
from mnistzoo.zoo import list_models

RESULTS = Path(__file__).resolve().parent.parent / "results"
RECORDS = ("card.json", "history.json", "curves.png", "export.json")


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
        print(f"{model_id}: test accuracy {result.card['results']['test_accuracy']:.4f} -> "
              f"{collect(result.run_dir, model_id)}", flush=True)


if __name__ == "__main__":
    main()
