"""Where runs live, and :class:`Run`, the owner of a run directory (a light module: no TensorFlow).

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
from dataclasses import dataclass
from pathlib import Path

from ._io import sha256_file, zoo_home
from .errors import InvalidInput
from .records import EvalRecord, ExportRecord, TrainCard, checkpoint_sha256, read_record

DEFAULT_SEED = 0
PUBLISHED_SEED = DEFAULT_SEED  # the seed whose weights results/ keeps and the published zoo holds
# The files of a run directory.
STATE, CHECKPOINT = "state.json", "checkpoint.keras"  # while training
CARD, KERAS, WEIGHTS, HISTORY, CURVES = "card.json", "model.keras", "model.weights.h5", "history.json", "curves.png"
ONNX, INT8, EXPORT, EVAL, KERNELS = "model.onnx", "model.int8.onnx", "export.json", "eval.json", "kernels.png"
TEST_INPUT, TEST_OUTPUT = "test_data_set_0/input_0.pb", "test_data_set_0/output_0.pb"  # ONNX Model Zoo layout
SEED_DIR = re.compile(r"seed(0|[1-9][0-9]{0,9})")
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}@[1-9][0-9]{0,5}")  # id@version: the only names joined into a path
_RUN_FILE = re.compile(r"(card|state|history|export|eval)\.json|(checkpoint|model)\.keras|model\.weights\.h5|"
                       r"model(\.opset\d+|\.int8)?\.onnx|(curves|kernels)\.png|test_data_set_0")  # what migrate moves


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
    model_dir = run_dir(name, DEFAULT_SEED, runs).parent
    marker = CARD if finished else "*.json"
    found = [int(m.group(1)) for d in model_dir.glob("seed*")
             if (m := SEED_DIR.fullmatch(d.name)) and any(d.glob(marker))] if model_dir.is_dir() else []
    return sorted(found)


def _recorded_seed(model_dir: Path) -> int:
    """The seed a pre-seed run was trained with (its card, else its state), 0 when neither says."""
    for name, path in ((CARD, ("seed",)), (STATE, ("config", "seed"))):
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
    """Move a pre-seed run's files from ``<id>@<v>/`` into ``<id>@<v>/seed<k>/`` (nothing to do if none). Only a
    real directory named ``id@version`` is touched, never one reached through a symbolic link."""
    if not NAME.fullmatch(model_dir.name) or model_dir.is_symlink() or not model_dir.is_dir():
        return
    loose = [p for p in model_dir.iterdir() if _RUN_FILE.fullmatch(p.name) and not p.is_symlink()]
    if not any(p.name in (CARD, STATE) for p in loose):
        return
    dest = model_dir / seed_dir_name(_recorded_seed(model_dir))
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"{model_dir} holds a run from before seeds had directories and {dest} exists too; "
                           f"move one of them away")
    dest.mkdir(exist_ok=True)
    for path in loose:
        os.replace(path, dest / path.name)


def trained_settings(card: TrainCard) -> dict:
    """A finished run's settings as a user chooses them: the recipe's fields, seed, limit, precision."""
    return {**card["recipe"], "seed": card["seed"], "limit": card["overrides"].get("limit"),
            "precision": card.get("precision", "float32")}


@dataclass(frozen=True)
class Run:
    """One run directory (``<runs>/<id>@<version>/seed<k>/``, or a run's records under ``results/``): the names of
    its files, its records, and the judgements every stage asks of it."""

    path: Path

    @classmethod
    def of(cls, name: str, seed: int = DEFAULT_SEED, runs: Path | None = None) -> Run:
        return cls(run_dir(name, seed, runs))

    def __truediv__(self, file: str) -> Path:
        return self.path / file

    @property
    def finished(self) -> bool:
        """Trained to the end: its card is written (the commit point of a finished run)."""
        return (self.path / CARD).is_file()

    @property
    def partial(self) -> bool:
        """Training, or stopped mid-way: resumable from its state."""
        return (self.path / STATE).is_file() and not self.finished

    def card(self, fix: str = "") -> TrainCard:
        return read_record(self.path / CARD, TrainCard, fix)

    def export_record(self, fix: str = "") -> ExportRecord:
        return read_record(self.path / EXPORT, ExportRecord, fix)

    def eval_record(self, fix: str = "") -> EvalRecord:
        return read_record(self.path / EVAL, EvalRecord, fix)

    def weights_kept(self, card: TrainCard) -> bool:
        """Its weights file is here and is the one its card records."""
        return bool(card.get("weights_sha256")) and (self.path / WEIGHTS).is_file() and \
            sha256_file(self.path / WEIGHTS) == card["weights_sha256"]

    def export_current(self, card: TrainCard, route: str, timed: bool = True) -> bool:
        """Its ``export.json`` is :func:`export_current`."""
        try:
            return export_current(self.export_record(), card, route, timed)
        except InvalidInput:
            return False

    def evaluated(self, timed: bool = True) -> bool:
        """Its ONNX file was evaluated (and, ``timed``, its latency measured)."""
        try:
            return bool(self.eval_record()["latency"]) or not timed
        except InvalidInput:
            return False


def export_current(export: ExportRecord, card: TrainCard, route: str, timed: bool = True) -> bool:
    """An export made from the run's current checkpoint by the conversion ``route``, every opset passing parity,
    its int8 file (if any) verified against the ONNX reference implementation, checked for lost accuracy and
    (``timed``) timed against float32 in interleaved rounds (older exports were not, and are redone)."""
    int8 = export.get("int8") or {}
    return (export["checkpoint_sha256"] == checkpoint_sha256(card) and export["conversion"].get("route") == route
            and exported(export)
            and ("skipped" in int8 or (int8.get("reference", {}).get("passed") is True
                                       and "check_accuracy_delta" in int8 and ("rounds" in int8 or not timed))))


def exported(record: ExportRecord | dict) -> bool:
    """An ``export.json`` says every opset passed parity (a failed export's record says not)."""
    opsets = record.get("opsets")
    return bool(opsets) and all(isinstance(o, dict) and o.get("passed") is True for o in opsets.values())
