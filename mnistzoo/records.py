"""The records mnistzoo writes and reads back, each a typed record defined once, with a ``schema`` version.

Keys mean one thing everywhere: ``id`` is the bare model id (``mlp2``), ``name`` is ``id@version``
(``mlp2@1``), ``path`` is always a file. Records are written by :func:`write_record` (atomically) and
read by :func:`read_record` (or :func:`parse_record` for a card embedded in an ONNX file), which check
every key's JSON type. Any record may be garbage, truncated, of the wrong JSON type or missing keys (a
crash, a disk fault, a hand edit): each of those is one :class:`InvalidInput` line naming the file and
the fix. Records written before schema 1 (the committed ``results/`` and the starter pack) are read
through :data:`UPGRADES`.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, NotRequired, TypedDict, TypeVar

from ._io import atomic_path
from .errors import InvalidInput

SCHEMA = 1


class TrainState(TypedDict):
    """``state.json``: a partial run's settings and history; the commit point of each epoch."""

    schema: int
    config: dict
    history: list
    checkpoint_sha256: str


class TrainCard(TypedDict):
    """``card.json``: a finished run (recipe and overrides, seed, data hashes, results, environment)."""

    schema: int
    id: str
    name: str
    version: int
    study: str
    recipe: dict
    precision: str
    recipe_is_original: bool
    overrides: dict
    seed: int
    train_images: int
    epochs_run: int
    validation_note: str
    dataset: dict
    results: dict
    reference: dict
    delta: dict
    wall_seconds: float
    images_per_second: float | None
    model_sha256: str  # model.keras (with optimiser state)
    environment: dict
    weights_sha256: NotRequired[str]  # model.weights.h5, the weights every published file is rebuilt from


def checkpoint_sha256(card: TrainCard) -> str:
    """The SHA-256 that exports of this run name as their source: its weights file's, else its ``model.keras``'s."""
    return card.get("weights_sha256") or card["model_sha256"]


class OnnxCard(TypedDict):
    """The card embedded in an exported ONNX file (metadata ``mnistzoo.card``)."""

    schema: int
    id: str
    name: str
    version: int
    study: str
    dataset: str
    class_names: list
    input: dict
    output: dict
    preprocessing: str
    recipe: dict
    recipe_is_original: bool
    seed: int
    keras_test_accuracy: float
    keras_test_loss: float
    reference: dict
    checkpoint_sha256: str
    dataset_sha256: dict
    conversion: dict
    mnistzoo: str
    int8: NotRequired[dict]  # in an int8 file: how it was quantized (what the machine measured is in export.json)


class ExportRecord(TypedDict):
    """``export.json``: parity per opset (and the int8 file's figures) of one export."""

    schema: int
    id: str
    name: str
    checkpoint_sha256: str
    dataset: str
    test_images: int
    tolerance: dict
    opsets: dict
    conversion: dict
    environment: dict
    int8: NotRequired[dict]


class EvalRecord(TypedDict):
    """What ``mnistzoo eval`` measures of one file (``--json``, and ``eval.json`` in results)."""

    schema: int
    path: str
    id: str | None
    name: str | None
    dataset: str
    images: int
    accuracy: float
    loss: float
    per_class_accuracy: list
    confusion_matrix: list
    parity: dict | None
    latency: list
    keras_latency: NotRequired[list]
    environment: dict


class SeedSummary(TypedDict):
    """``summary.json``: one model's full-recipe runs over seeds (n, mean, std, min, max of each metric)."""

    schema: int
    id: str
    name: str
    seeds: list
    n: int
    test_accuracy: dict
    test_loss: dict


Record = TypeVar("Record", TrainState, TrainCard, OnnxCard, ExportRecord, EvalRecord, SeedSummary)


def _name_from_id(doc: dict) -> dict:
    """Pre-schema train card: ``id`` was bare already; ``name`` and ``precision`` were derived."""
    return {**doc, "name": f"{doc.get('id')}@{doc.get('version')}", "precision": doc.get("precision", "float32")}


def _onnx_card_keys(doc: dict) -> dict:
    """Pre-schema ONNX card: ``id`` held ``id@version`` and ``model`` the bare id."""
    rest = {k: v for k, v in doc.items() if k != "model"}
    return {**rest, "id": doc.get("model"), "name": doc.get("id")}


def _export_keys(doc: dict) -> dict:
    """Pre-schema export.json: ``model`` held ``id@version``."""
    name = doc.get("model")
    rest = {k: v for k, v in doc.items() if k != "model"}
    return {**rest, "name": name, "id": name.split("@")[0] if isinstance(name, str) else None}


def _eval_keys(doc: dict) -> dict:
    """Pre-schema eval JSON: ``model`` held the file's path and ``id`` the card's ``id@version``."""
    name = doc.get("id")
    rest = {k: v for k, v in doc.items() if k != "model"}
    return {**rest, "path": doc.get("model"), "name": name,
            "id": name.split("@")[0] if isinstance(name, str) else None}


UPGRADES: dict[type, typing.Callable[[dict], dict]] = {
    TrainState: dict, TrainCard: _name_from_id, OnnxCard: _onnx_card_keys, ExportRecord: _export_keys,
    EvalRecord: _eval_keys,
}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type a field is annotated with (an int counts as a float)."""
    if hint is Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(hint) or hint)


def parse_record(doc: Any, kind: type[Record], origin: str, fix: str) -> Record:
    """``doc`` checked against the typed record ``kind`` (pre-schema records upgraded first)."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"{origin}: expected a JSON object, found {type(doc).__name__}; {fix}")
    if "schema" not in doc:
        doc = {**UPGRADES[kind](doc), "schema": SCHEMA}
    if doc["schema"] != SCHEMA:
        raise InvalidInput(f"{origin}: record schema {doc['schema']!r} is not the {SCHEMA} this mnistzoo reads; "
                           f"{fix}, or upgrade mnistzoo")
    hints = typing.get_type_hints(kind, include_extras=True)
    bad = []
    for key, hint in hints.items():
        optional = typing.get_origin(hint) is NotRequired
        hint = typing.get_args(hint)[0] if optional else hint
        if key in doc and not _fits(doc[key], hint) or key not in doc and not optional:
            bad.append(key)
    if bad:
        raise InvalidInput(f"{origin}: missing or mistyped {', '.join(repr(k) for k in bad)}; {fix}")
    return doc  # type: ignore[return-value]


def _load(path: Path, fix: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{path}: missing; {fix}") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: unreadable or not JSON, the file is corrupt or truncated "
                           f"({type(exc).__name__}); {fix}") from None


def read_record(path: Path, kind: type[Record], fix: str) -> Record:
    """The record at ``path``; ``fix`` says what to do when it is missing or bad."""
    return parse_record(_load(path, fix), kind, str(path), fix)


def read_history(path: Path, fix: str) -> list[dict]:
    """``history.json``: one object per epoch."""
    doc = _load(path, fix)
    if not isinstance(doc, list) or not all(isinstance(row, dict) for row in doc):
        raise InvalidInput(f"{path}: expected a list of per-epoch objects; {fix}")
    return doc


def dump_record(record: dict | list) -> str:
    """A record's text as written: indented JSON and a final newline."""
    return json.dumps(record, indent=2) + "\n"


def write_record(path: Path, record: dict | list) -> None:
    """Write a record (or a history list) as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dump_record(record))
