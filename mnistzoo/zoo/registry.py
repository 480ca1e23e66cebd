"""A tiny registry of zoo models by id and version, with fnmatch listing (after torchvision and timm)."""

from __future__ import annotations

import difflib
import fnmatch

from ..errors import MnistZooError
from .base import ZooModel

_MODELS: dict[str, dict[int, type[ZooModel]]] = {}


def register_model(cls: type[ZooModel]) -> type[ZooModel]:
    """Class decorator: register a ZooModel subclass under its id and version."""
    versions = _MODELS.setdefault(cls.id, {})
    if cls.version in versions:
        raise ValueError(f"model {cls.id}@{cls.version} is registered twice")
    versions[cls.version] = cls
    return cls


def _split(name: str) -> tuple[str, int | None]:
    model_id, sep, version = name.partition("@")
    if not sep:
        return model_id, None
    if not version.isdigit():
        raise MnistZooError(f"bad model name '{name}': the version after '@' must be a number, e.g. {model_id}@1")
    return model_id, int(version)


def get_model_class(name: str) -> type[ZooModel]:
    """The class for ``id`` (latest version) or ``id@N``; unknown names get the closest ids."""
    model_id, version = _split(name)
    if model_id not in _MODELS:
        close = difflib.get_close_matches(model_id, _MODELS, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}; " if close else ""
        raise MnistZooError(f"unknown model '{model_id}'; {hint}see `mnistzoo list`")
    versions = _MODELS[model_id]
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        have = ", ".join(f"{model_id}@{v}" for v in sorted(versions))
        raise MnistZooError(f"model '{model_id}' has no version {version}; available: {have}")
    return versions[version]


def get_model(name: str) -> ZooModel:
    """A zoo model by ``id`` or ``id@N``: call ``.build()`` for the Keras model, ``.spec`` for its recipe."""
    return get_model_class(name)()


def list_models(pattern: str | None = None, study: str | None = None) -> list[str]:
    """Ids of the latest versions, in catalogue order, filtered by an fnmatch pattern and/or study."""
    ids = []
    for model_id, versions in _MODELS.items():
        cls = versions[max(versions)]
        if pattern and not fnmatch.fnmatchcase(model_id, pattern):
            continue
        if study and cls.study != study:
            continue
        ids.append(model_id)
    return ids


def studies() -> list[str]:
    """The studies, in catalogue order."""
    return list(dict.fromkeys(versions[max(versions)].study for versions in _MODELS.values()))
