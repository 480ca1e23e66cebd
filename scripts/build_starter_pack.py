"""Build the starter pack shipped inside the package (``mnistzoo/starter/``) from full-recipe runs.

    python scripts/build_starter_pack.py [--runs DIR] [ID ...]

Each model must have been trained with its original recipe and exported (``mnistzoo build``);
the pack holds their verified ONNX files and training cards, at most 5 MB in all.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mnistzoo.pretrained import STARTER, publish
from mnistzoo.runs import run_dir

MODELS = ("mlp3_dropout_bn", "cnn3_k5", "fashion_mlp2", "softmax_sgd")
MAX_BYTES = 5_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", default=list(MODELS))
    parser.add_argument("--runs", type=Path, default=None, help="runs directory (default: $MNISTZOO_HOME/runs)")
    args = parser.parse_args()
    for model_id in args.ids:
        card = json.loads((run_dir(f"{model_id}@1", 0, args.runs) / "card.json").read_text())
        if not card["recipe_is_original"]:
            raise SystemExit(f"{model_id} was not trained with its full recipe; it cannot ship")
    shutil.rmtree(STARTER, ignore_errors=True)
    entries = publish(STARTER, args.ids, runs=args.runs, kinds=("onnx", "card"))
    total = sum(e.size for e in entries)
    if total > MAX_BYTES:
        shutil.rmtree(STARTER)
        raise SystemExit(f"the pack would be {total:,} bytes, over {MAX_BYTES:,}")
    for e in entries:
        print(f"{e.id}@{e.version} {e.kind}: {e.size:,} bytes")
    print(f"{total:,} bytes in {STARTER}")


if __name__ == "__main__":
    main()
