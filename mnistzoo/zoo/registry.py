"""A tiny registry of zoo models by id and version, with fnmatch listing (after torchvision and timm)."""

from __future__ import annotations

import difflib
import fnmatch
import re

from ..errors import InvalidInput
from .base import ZooModel

_MODELS: dict[str, dict[int, type[ZooModel]]] = {}


def register_model(cls: type[ZooModel]) -> type[ZooModel]:
    """Class decorator: register a ZooModel subclass under its id and version."""
    versions = _MODELS.setdefault(cls.id, {})
    if cls.version in versions:
        raise ValueError(f"model {cls.id}@{cls.version} is registered twice")
    versions[cls.version] = cls
    return cls


_NAME = re.compile(r"([a-z0-9_]+)(?:@(.*))?", re.ASCII | re.DOTALL)
_VERSION = re.compile(r"[1-9][0-9]{0,5}", re.ASCII)


def _split(name: str) -> tuple[str, int | None]:
    """``"mlp2"`` -> ``("mlp2", None)``, ``"mlp2@1"`` -> ``("mlp2", 1)``; anything else is a one-line error."""
    if not isinstance(name, str):
        raise InvalidInput(f"a model name is a string like mlp2 or mlp2@1, got {type(name).__name__}")
    match = _NAME.fullmatch(name)
    if match is None:
        model_id = name.partition("@")[0]
        raise InvalidInput(f"unknown model {name!r}: ids are lower-case letters, digits and '_'{_closest(model_id)}; "
                           "see `mnistzoo list`")
    model_id, version = match.group(1), match.group(2)
    if version is None:
        return model_id, None
    if not _VERSION.fullmatch(version):
        raise InvalidInput(f"bad model name {name!r}: the version after '@' must be a number like 1 (ASCII digits, "
                           f"no sign or leading zero), e.g. {model_id}@1")
    return model_id, int(version)


def _closest(model_id: str) -> str:
    close = difflib.get_close_matches(model_id.strip().lower(), _MODELS, n=3, cutoff=0.5)
    return f"; closest: {', '.join(close)}" if close else ""


def get_model_class(name: str) -> type[ZooModel]:
    """The class for ``id`` (latest version) or ``id@N``; unknown names get the closest ids."""
    model_id, version = _split(name)
    if model_id not in _MODELS:
        raise InvalidInput(f"unknown model '{model_id}'{_closest(model_id)}; see `mnistzoo list`")
    versions = _MODELS[model_id]
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        have = ", ".join(f"{model_id}@{v}" for v in sorted(versions))
        raise InvalidInput(f"model '{model_id}' has no version {version}; available: {have}")
    return versions[version]


def get_model(name: str) -> ZooModel:
    """A zoo model by ``id`` or ``id@N``: call ``.build()`` for the Keras model, ``.spec`` for its recipe."""
    return get_model_class(name)()


def list_models(pattern: str | None = None, study: str | None = None) -> list[str]:
    """Ids of the latest versions, in catalogue order, filtered by an fnmatch pattern and/or study."""
    if study is not None and study not in studies():
        raise InvalidInput(f"unknown study {study!r}; choose one of: {', '.join(studies())}")
    if pattern is not None and not isinstance(pattern, str):
        raise InvalidInput(f"a model pattern is a string like 'cnn5*', got {type(pattern).__name__}")
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
