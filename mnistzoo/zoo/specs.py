"""``zoo_specs/``: each model's training recipe, provenance and the notebook's reported results.

One TOML file per study: ``[study]`` (notebook, notes, and ``[study.recipe]`` shared by its
models) and ``[models.<id>]`` (version, section, variable, reference, notes, and an optional
``recipe`` table overriding the study's). The files ship inside the wheel as ``mnistzoo.zoo_specs``.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import MnistZooError

STUDIES = ("depth", "cnn", "activations", "fashion", "init")
OPTIMIZERS = ("sgd", "adam")


class SpecError(MnistZooError):
    """A zoo_specs file is malformed."""


@dataclass(frozen=True)
class Recipe:
    """How a model was trained. ``validation``: 'test' (the notebook validated on the test set)
    or 'split' (the last ``validation_images`` training images)."""

    dataset: str
    optimizer: str
    learning_rate: float
    loss: str
    batch_size: int
    epochs: int
    validation: str
    validation_images: int | None = None


@dataclass(frozen=True)
class Reference:
    """The notebook's reported results (None where it gave none)."""

    test_accuracy: float | None = None
    test_loss: float | None = None
    train_accuracy: float | None = None


@dataclass(frozen=True)
class Provenance:
    notebook: str
    notebook_title: str
    section: str
    variable: str


@dataclass(frozen=True)
class ModelSpec:
    id: str
    version: int
    study: str
    recipe: Recipe
    provenance: Provenance
    reference: Reference
    notes: str
    study_notes: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _field(table: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise SpecError(f"{where}: missing field '{key}'")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SpecError(f"{where}: field '{key}' must be {names}, got {value!r}")
    return value


def _recipe(table: dict, where: str) -> Recipe:
    recipe = Recipe(
        dataset=_field(table, "dataset", str, where),
        optimizer=_field(table, "optimizer", str, where),
        learning_rate=float(_field(table, "learning_rate", (int, float), where)),
        loss=_field(table, "loss", str, where),
        batch_size=_field(table, "batch_size", int, where),
        epochs=_field(table, "epochs", int, where),
        validation=_field(table, "validation", str, where),
        validation_images=_field(table, "validation_images", int, where, None),
    )
    if recipe.dataset not in ("mnist", "fashion_mnist"):
        raise SpecError(f"{where}: field 'dataset' must be mnist or fashion_mnist, got {recipe.dataset!r}")
    if recipe.optimizer not in OPTIMIZERS:
        raise SpecError(f"{where}: field 'optimizer' must be one of {', '.join(OPTIMIZERS)}, got {recipe.optimizer!r}")
    if recipe.batch_size <= 0 or recipe.epochs <= 0:
        raise SpecError(f"{where}: fields 'batch_size' and 'epochs' must be positive")
    if recipe.validation not in ("test", "split") or (recipe.validation == "split") != bool(recipe.validation_images):
        raise SpecError(f"{where}: field 'validation' must be 'test', or 'split' with a positive validation_images")
    return recipe


def parse_study(path: Path, text: str) -> dict[str, ModelSpec]:
    """Parse one study file; every error names the file, the model id and the field."""
    study = path.stem
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    head = _field(doc, "study", dict, f"{path}")
    base_recipe = _field(head, "recipe", dict, f"{path}: [study]")
    specs = {}
    for model_id, table in _field(doc, "models", dict, f"{path}").items():
        where = f"{path}: models.{model_id}"
        if not isinstance(table, dict):
            raise SpecError(f"{where}: must be a table")
        ref = _field(table, "reference", dict, where)
        specs[model_id] = ModelSpec(
            id=model_id,
            version=_field(table, "version", int, where),
            study=study,
            recipe=_recipe(base_recipe | _field(table, "recipe", dict, where, {}), where),
            provenance=Provenance(
                notebook=_field(head, "notebook", str, f"{path}: [study]"),
                notebook_title=_field(head, "notebook_title", str, f"{path}: [study]"),
                section=_field(table, "section", str, where),
                variable=_field(table, "variable", str, where),
            ),
            reference=Reference(**{k: _field(ref, k, (int, float), f"{where}.reference", None)
                                   for k in ("test_accuracy", "test_loss", "train_accuracy")}),
            notes=_field(table, "notes", str, where, ""),
            study_notes=_field(head, "notes", str, f"{path}: [study]", ""),
        )
        unknown = set(ref) - {"test_accuracy", "test_loss", "train_accuracy"}
        if unknown:
            raise SpecError(f"{where}.reference: unknown field '{sorted(unknown)[0]}'")
    return specs


def load_specs(directory: Path | None = None) -> dict[str, ModelSpec]:
    """Every model spec, from ``directory`` or the packaged ``mnistzoo.zoo_specs``."""
    root = Path(directory) if directory else resources.files("mnistzoo.zoo_specs")
    specs: dict[str, ModelSpec] = {}
    for study in STUDIES:
        path = root / f"{study}.toml"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the study file ({exc.strerror or exc})") from None
        for model_id, spec in parse_study(Path(str(path)), text).items():
            if model_id in specs:
                raise SpecError(f"{path}: models.{model_id}: id already defined in {specs[model_id].study}.toml")
            specs[model_id] = spec
    return specs


@functools.cache
def all_specs() -> dict[str, ModelSpec]:
    """The packaged specs, loaded once."""
    return load_specs()


def get_spec(model_id: str) -> ModelSpec:
    """The spec of one model id."""
    try:
        return all_specs()[model_id]
    except KeyError:
        raise SpecError(f"zoo_specs has no entry for model '{model_id}'; add [models.{model_id}] to a study file") from None
