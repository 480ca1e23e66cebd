"""``zoo_specs/``: each model's training recipe, provenance and the notebook's reported results.

One TOML file per study: ``[study]`` (notebook, notes, and ``[study.recipe]`` shared by its
models) and ``[models.<id>]`` (version, section, variable, reference, notes, and an optional
``recipe`` table overriding the study's). A later version of a model is its own table,
``[models."<id>@<version>"]``, so every version keeps its recipe. The files ship inside the wheel as ``mnistzoo.zoo_specs``.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import SpecError

STUDIES = ("depth", "cnn", "activations", "fashion", "init")
OPTIMIZERS = ("sgd", "adam")


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
class StudyInfo:
    """A study's notebook, the analyses it ran and its conclusion: the notebook's words and the
    checkable claims they imply (see :mod:`mnistzoo.report` for the claim forms)."""

    name: str
    title: str
    notebook: str
    notebook_title: str
    analyses: str
    notes: str
    conclusion: str
    claims: tuple[str, ...]
    baseline: str | None = None


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
    if recipe.validation_images is not None and recipe.validation_images <= 0:
        raise SpecError(f"{where}: field 'validation_images' must be positive when given")
    if recipe.validation not in ("test", "split") or (recipe.validation == "split") != bool(recipe.validation_images):
        raise SpecError(f"{where}: field 'validation' must be 'test', or 'split' with a positive validation_images")
    return recipe


def _toml(path: Path, text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None


SpecKey = tuple[str, int]  # (id, version)


def parse_study(path: Path, text: str) -> dict[SpecKey, ModelSpec]:
    """Parse one study file; every error names the file, the model id and the field."""
    study = path.stem
    doc = _toml(path, text)
    head = _field(doc, "study", dict, f"{path}")
    base_recipe = _field(head, "recipe", dict, f"{path}: [study]")
    specs = {}
    for key, table in _field(doc, "models", dict, f"{path}").items():
        where = f"{path}: models.{key}"
        if not isinstance(table, dict):
            raise SpecError(f"{where}: must be a table")
        model_id, _, key_version = key.partition("@")
        version = _field(table, "version", int, where)
        if key_version and key_version != str(version):
            raise SpecError(f"{where}: field 'version' is {version}, but the table is named for version {key_version}")
        ref = _field(table, "reference", dict, where)
        specs[model_id, version] = ModelSpec(
            id=model_id,
            version=version,
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


def parse_study_info(path: Path, text: str) -> StudyInfo:
    """The ``[study]`` table of one study file."""
    where = f"{path}: [study]"
    head = _field(_toml(path, text), "study", dict, f"{path}")
    conclusion = _field(head, "conclusion", dict, where)
    claims = _field(conclusion, "claims", list, f"{where}.conclusion")
    if not all(isinstance(c, str) for c in claims):
        raise SpecError(f"{where}.conclusion: field 'claims' must be a list of strings")
    return StudyInfo(name=path.stem, title=_field(head, "title", str, where),
                     notebook=_field(head, "notebook", str, where),
                     notebook_title=_field(head, "notebook_title", str, where),
                     analyses=_field(head, "analyses", str, where), notes=_field(head, "notes", str, where, ""),
                     conclusion=_field(conclusion, "text", str, f"{where}.conclusion"), claims=tuple(claims),
                     baseline=_field(head, "baseline", str, where, None))


def _study_path(root: Path, study: str) -> tuple[Path, str]:
    path = root / f"{study}.toml"
    try:
        return Path(str(path)), path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the study file ({exc.strerror or exc})") from None


def _root(directory: Path | None) -> Path:
    return Path(directory) if directory else resources.files("mnistzoo.zoo_specs")


def load_specs(directory: Path | None = None) -> dict[SpecKey, ModelSpec]:
    """Every model spec by (id, version), from ``directory`` or the packaged ``mnistzoo.zoo_specs``."""
    root = _root(directory)
    specs: dict[SpecKey, ModelSpec] = {}
    for study in STUDIES:
        path, text = _study_path(root, study)
        for key, spec in parse_study(path, text).items():
            if key in specs:
                raise SpecError(f"{path}: models.{key[0]}: id already defined in {specs[key].study}.toml")
            specs[key] = spec
    return specs


@functools.cache
def all_specs() -> dict[SpecKey, ModelSpec]:
    """The packaged specs, loaded once."""
    return load_specs()


def get_spec(model_id: str, version: int) -> ModelSpec:
    """The spec of one model version."""
    try:
        return all_specs()[model_id, version]
    except KeyError:
        table = model_id if version == 1 else f'"{model_id}@{version}"'
        raise SpecError(f"zoo_specs has no entry for model {model_id}@{version}; add [models.{table}] to a study "
                        "file") from None


@functools.cache
def study_info(study: str, directory: Path | None = None) -> StudyInfo:
    """One study's notebook, analyses and conclusion."""
    if study not in STUDIES:
        raise SpecError(f"unknown study '{study}'; choose one of {', '.join(STUDIES)}")
    return parse_study_info(*_study_path(_root(directory), study))
