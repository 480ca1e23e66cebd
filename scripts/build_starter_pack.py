"""Build the starter pack shipped inside the package (``mnistzoo/starter/``) from the published zoo.

    python scripts/build_starter_pack.py [--zoo dist/zoo] [ID ...]

The pack holds the float32 ONNX file and training card of a few full-recipe models, byte for byte the files of
the published zoo (``make weights`` writes it; its manifest is ``published/manifest.json``), at most 5 MB in all.
A model not in the published zoo yet keeps the files the pack already has.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from mnistzoo.hub import HubFile, copy_into, layout, load_manifest, verify
from mnistzoo.pretrained import STARTER

MODELS = ("mlp3_dropout_bn", "cnn3_k5", "fashion_mlp2", "softmax_sgd")
KINDS = ("onnx", "card")
MAX_BYTES = 5_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", default=list(MODELS))
    parser.add_argument("--zoo", type=Path, default=Path("dist/zoo"), help="the published zoo (default: dist/zoo)")
    args = parser.parse_args()
    published = {e.key: e for e in load_manifest(args.zoo)}
    kept = {e.key: e for e in load_manifest(STARTER)}
    chosen: dict[tuple, tuple[Path, HubFile]] = {}
    for model_id in args.ids:
        for kind in KINDS:
            key = (model_id, 1, 0, kind)
            source, entry = (args.zoo, published[key]) if key in published else (STARTER, kept.get(key))
            if entry is None:
                raise SystemExit(f"{model_id} ({kind}) is neither in {args.zoo} nor in the pack; run `make weights`")
            verify(source / entry.file, entry, "rebuild it with `make weights`")
            chosen[key] = source, entry
    for (model_id, *_), (source, entry) in chosen.items():
        if entry.kind == "card" and not json.loads((source / entry.file).read_text())["recipe_is_original"]:
            raise SystemExit(f"{model_id} was not trained with its full recipe; it cannot ship")
    with tempfile.TemporaryDirectory() as tmp:  # the pack's own files may be among the sources
        staged = {key: Path(tmp) / layout(*key) for key in chosen}
        for key, (source, entry) in chosen.items():
            staged[key].parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / entry.file, staged[key])
        shutil.rmtree(STARTER, ignore_errors=True)
        entries = copy_into(STARTER, staged)
    total = sum(e.size for e in entries)
    if total > MAX_BYTES:
        raise SystemExit(f"the pack is {total:,} bytes, over {MAX_BYTES:,}; choose fewer or smaller models")
    for e in entries:
        print(f"{e.name} {e.kind}: {e.size:,} bytes, sha256 {e.sha256[:12]}…")
    print(f"{total:,} bytes in {STARTER}")


if __name__ == "__main__":
    main()
