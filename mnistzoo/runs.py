"""Where runs live (a light module: no TensorFlow).

One directory per (model, seed)::

    <runs>/<id>@<version>/seed<k>/     checkpoint.keras + state.json while training; then model.keras,
                                       model.weights.h5 (weights only), card.json, history.json, curves.png;
                                       after export model.onnx, model.int8.onnx, export.json; eval.json

A run written before seeds had directories (its files directly in ``<id>@<version>/``) is moved
into ``seed<k>/`` of the seed its records name the first time it is looked up.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ._io import zoo_home
from .errors import InvalidInput

DEFAULT_SEED = 0
PUBLISHED_SEED = DEFAULT_SEED  # the seed whose weights results/ keeps and the published zoo holds
# The files of a run directory.
STATE, CHECKPOINT = "state.json", "checkpoint.keras"  # while training
CARD, KERAS, WEIGHTS, HISTORY, CURVES = "card.json", "model.keras", "model.weights.h5", "history.json", "curves.png"
ONNX, INT8, EXPORT, EVAL, KERNELS = "model.onnx", "model.int8.onnx", "export.json", "eval.json", "kernels.png"
TEST_INPUT, TEST_OUTPUT = "test_data_set_0/input_0.pb", "test_data_set_0/output_0.pb"  # ONNX Model Zoo layout
SEED_DIR = re.compile(r"seed(0|[1-9][0-9]{0,9})")
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}@[1-9][0-9]{0,5}")  # id@version: the only names joined into a path


def runs_dir(out: Path | None = None) -> Path:
    """Where run directories live: ``--out`` or ``$MNISTZOO_HOME/runs``."""
    return Path(out) if out is not None else zoo_home() / "runs"


def seed_dir_name(seed: int) -> str:
    return f"seed{seed}"


def run_dir(name: str, seed: int = DEFAULT_SEED, runs: Path | None = None) -> Path:
    """``<runs>/<id>@<version>/seed<seed>/`` (not created), after migrating a pre-seed run of ``name``; a name that
    is not ``id@version`` (one read from a file, say) never becomes a path."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or isinstance(seed, bool) or not isinstance(seed, int) \
            or seed < 0:
        raise InvalidInput(f"{name!r} seed {seed!r} does not name a run (id@version and a seed from 0)")
    model_dir = runs_dir(runs) / name
    migrate(model_dir)
    return model_dir / seed_dir_name(seed)


def seeds_of(name: str, runs: Path | None = None, *, finished: bool = True) -> list[int]:
    """The seeds of ``name`` with a finished run (``finished=False``: with any run), ascending."""
    model_dir = runs_dir(runs) / name
    migrate(model_dir)
    marker = "card.json" if finished else "*.json"
    found = [int(m.group(1)) for d in model_dir.glob("seed*")
             if (m := SEED_DIR.fullmatch(d.name)) and any(d.glob(marker))] if model_dir.is_dir() else []
    return sorted(found)


def _recorded_seed(model_dir: Path) -> int:
    """The seed a pre-seed run was trained with (its card, else its state), 0 when neither says."""
    for name, path in (("card.json", ("seed",)), ("state.json", ("config", "seed"))):
        try:
            value = json.loads((model_dir / name).read_text())
            for key in path:
                value = value[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return DEFAULT_SEED


def migrate(model_dir: Path) -> None:
    """Move a pre-seed run's files from ``<id>@<v>/`` into ``<id>@<v>/seed<k>/`` (nothing to do if none)."""
    if not model_dir.is_dir():
        return
    loose = [p for p in model_dir.iterdir() if not (p.is_dir() and SEED_DIR.fullmatch(p.name))]
    if not any(p.name in ("card.json", "state.json") for p in loose):
        return
    dest = model_dir / seed_dir_name(_recorded_seed(model_dir))
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"{model_dir} holds a run from before seeds had directories and {dest} exists too; "
                           f"move one of them away")
    dest.mkdir(exist_ok=True)
    for path in loose:
        os.replace(path, dest / path.name)
