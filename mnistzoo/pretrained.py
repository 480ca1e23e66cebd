"""Ready-to-use trained models: ``load_pretrained`` and where it finds them.

``load_pretrained("mlp3_dropout_bn")`` looks for ``id@version`` (default: the latest version) in order:

1. the local zoo home: a run the user trained and exported (``$MNISTZOO_HOME/runs/<id>@<v>/seed<k>/``),
   checked against the hashes in its ``export.json`` and ``card.json``;
2. an installed weights package (``pip install mnistzoo-weights-<study>``, see :mod:`mnistzoo.packages`);
3. the starter pack shipped inside the package (``mnistzoo/starter/``, four models);
4. the hub cache (``$MNISTZOO_HOME/hub/``), then the hub named by ``MNISTZOO_HUB`` (a directory or URL), whose
   files are downloaded once into the cache.

``seed`` (default 0) picks the training run, ``int8=True`` the int8 file. Every file is checked by SHA-256 (and
size) before use; a mismatch refuses to load. Hubs, packages and the starter pack share the layout of
:mod:`mnistzoo.hub`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import seed as check_seed
from ._io import sha256_file
from .errors import InvalidInput, MnistZooError, NotFound, VerificationError
from .hub import HUB_ENV, KINDS, cache_dir, download, find, hub_manifest, verify
from .packages import find_installed
from .preparation import as_images
from .records import ExportRecord, TrainCard, read_record
from .runs import CARD, DEFAULT_SEED, EXPORT, ONNX, run_dir, runs_dir
from .runtime import open_model
from .zoo.registry import get_model_class

STARTER = Path(__file__).with_name("starter")
SOURCES = ("zoo home", "weights package", "starter pack", "hub cache", "hub")
BACKENDS = {"onnx": ("onnx",), "keras": ("weights", "keras")}  # the kinds of file each backend loads, preferred first
log = logging.getLogger(__name__)


class Classifier:
    """An exported model behind a numpy/PIL front end (see :func:`as_images` for the inputs)."""

    def __init__(self, path: Path, source: str = "file", threads: int | None = None) -> None:
        self._model = open_model(path, "cpu", threads)
        if self._model.card is None:
            raise InvalidInput(f"{path} has no mnistzoo card; load files written by `mnistzoo export`")
        self.path, self.source, self.card = Path(path), source, self._model.card
        self.class_names: list[str] = list(self.card["class_names"])

    def predict_proba(self, images: Any, *, invert: bool | None = None, prepare: str | None = None) -> np.ndarray:
        """Class probabilities, float32 (N,10); ``invert`` and ``prepare`` as in :func:`as_images`."""
        return self._model.predict(as_images(images, invert=invert, prepare=prepare, dataset=self.card["dataset"]))

    def predict(self, images: Any, *, invert: bool | None = None, prepare: str | None = None) -> np.ndarray:
        """Predicted class indices, int64 (N,); ``class_names[i]`` names them."""
        return self.predict_proba(images, invert=invert, prepare=prepare).argmax(axis=1)

    def __repr__(self) -> str:
        return f"Classifier({self.card['name']}, {self.card['dataset']}, from {self.source}: {self.path})"


def load_pretrained(model_id: str, version: int | None = None, backend: str = "onnx", seed: int = DEFAULT_SEED,
                    int8: bool = False) -> Any:
    """A trained model, ready to use: a :class:`Classifier` (``backend="onnx"``; ``int8=True`` for the int8 file)
    or a Keras model (``backend="keras"``, needs the ``train`` extra).

    Looks in the zoo home, the installed weights packages, the starter pack, then the hub (see the module); every
    file is checked by SHA-256 first. Raises :class:`NotFound` when the model is nowhere (naming what makes it) and
    :class:`VerificationError` when a file does not match its hash.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r}; choose onnx or keras")
    if not isinstance(int8, bool) or (int8 and backend != "onnx"):
        raise InvalidInput(f"int8 must be True or False, and only with backend='onnx'; got int8={int8!r}")
    if version is not None and "@" in str(model_id):
        raise InvalidInput(f"give the version once: '{model_id}' or version={version}, not both")
    name = model_id if version is None else f"{model_id}@{version}"
    if backend == "keras":
        return _keras(name, seed)
    path, source = locate(name, "int8" if int8 else "onnx", seed)
    classifier = Classifier(path, source)
    if not classifier.card.get("recipe_is_original", False):
        log.warning("warning: %s from %s was not trained with its full recipe (recipe %s)",
                    classifier.card["name"], source, classifier.card["recipe"])
    return classifier


def _keras(name: str, seed: int) -> Any:
    """The Keras model of ``name``'s ``seed`` run: its weights read into the zoo's architecture (or, from an older
    hub, a whole ``.keras`` file in safe mode: no code is deserialised)."""
    from ._extras import require_extra

    require_extra("train", "backend='keras'")
    from .keras_runtime import load_keras

    try:
        path, _ = locate(name, "weights", seed)
    except NotFound as missing:
        try:
            path, _ = locate(name, "keras", seed)
        except NotFound:
            raise missing from None
    return load_keras(path, "@".join(map(str, resolve(name))))


# ----------------------------------------------------------------------------- resolution


def resolve(name: str) -> tuple[str, int]:
    cls = get_model_class(name)
    return cls.id, cls.version


def locate(name: str, kind: str = "onnx", seed: int = DEFAULT_SEED) -> tuple[Path, str]:
    """The verified ``kind`` file of ``id[@version]``'s ``seed`` run and where it was found (one of
    :data:`SOURCES`)."""
    model_id, version = resolve(name)
    seed = check_seed(seed)
    for source in SOURCES:
        path = _find(source, model_id, version, kind, seed)
        if path is not None:
            return path, source
    hub = os.environ.get(HUB_ENV)
    where = f"the hub {hub}" if hub else f"a hub ({HUB_ENV} is not set)"
    build = f"mnistzoo build {model_id}" + ("" if seed == DEFAULT_SEED else f" --seeds {seed}")
    raise NotFound(f"{model_id}@{version} seed {seed} ({kind}) is not in the zoo home ({runs_dir()}), an "
                        f"installed weights package, the starter pack or {where}; install the weights with `make "
                        f"weights` (in a clone) or `pip install mnistzoo-weights-"
                        f"{get_model_class(name).study}`, or make it with `{build}`")


def model_file(argument: str) -> Path:
    """An ONNX file named on a command line: an existing path as it is, else a zoo id's published file."""
    path = Path(argument)
    if path.exists() or path.suffix == ".onnx" or "/" in argument:
        return path
    try:
        get_model_class(argument)
    except InvalidInput as exc:
        raise InvalidInput(f"{argument}: no such file, and not a model id ({exc})") from None
    return locate(argument)[0]


def where(name: str, kind: str = "onnx", seed: int = DEFAULT_SEED) -> str | None:
    """Which of :data:`SOURCES` holds the file (listed there; checked when it is loaded), without downloading
    anything; None where no local source has it (a remote hub is not asked)."""
    model_id, version = resolve(name)
    for source in SOURCES[:-1]:
        try:
            if _listed(source, model_id, version, kind, seed):
                return source
        except MnistZooError:
            continue
    return None


def _listed(source: str, model_id: str, version: int, kind: str, seed: int) -> bool:
    if source == "zoo home":
        return in_runs(model_id, version, kind, seed=seed, check=False) is not None
    if source == "weights package":
        return find_installed(model_id, version, kind, seed) is not None
    folder = STARTER if source == "starter pack" else cache_dir()
    from .hub import load_manifest

    return any(e.key == (model_id, version, seed, kind) for e in load_manifest(folder))


def _find(source: str, model_id: str, version: int, kind: str, seed: int) -> Path | None:
    if source == "zoo home":
        return in_runs(model_id, version, kind, seed=seed)
    if source == "weights package":
        found = find_installed(model_id, version, kind, seed)
        if found is None:
            return None
        folder, entry = found
        verify(folder / entry.file, entry, f"reinstall the weights package that holds {folder}")
        return folder / entry.file
    if source == "starter pack":
        return find(STARTER, model_id, version, kind, seed)
    if source == "hub cache":
        return find(cache_dir(), model_id, version, kind, seed)
    root = os.environ.get(HUB_ENV)
    if not root:
        return None
    entries = [e for e in hub_manifest(root) if (e.id, e.version, e.seed) == (model_id, version, seed)]
    if not any(e.kind == kind for e in entries):
        return None
    return download(root, entries)[kind]


def in_runs(model_id: str, version: int, kind: str, runs: Path | None = None, seed: int = DEFAULT_SEED,
             check: bool = True) -> Path | None:
    """A finished (and for ONNX, exported) run's file, checked (``check``) against the hash its records hold."""
    run = run_dir(f"{model_id}@{version}", seed, runs)
    path = run / KINDS[kind]  # a run holds each kind under its hub name
    if not (run / CARD).is_file() or not path.is_file():
        return None
    if kind in ("onnx", "int8"):
        if not (run / EXPORT).is_file():
            return None
        record = read_record(run / EXPORT, ExportRecord, f"re-export with `mnistzoo export {model_id}`")
        expected = _exported_sha(record, kind, path.name)
        advice = f"re-export with `mnistzoo export {model_id}`"
    elif kind in ("card", "test_input", "test_output"):
        return path
    else:
        card = read_record(run / CARD, TrainCard, f"retrain with `mnistzoo train {model_id} --force`")
        expected = card.get("weights_sha256") if kind == "weights" else card["model_sha256"]
        advice = f"retrain with `mnistzoo train {model_id} --force`"
    if expected is None:
        return None
    if check and sha256_file(path) != expected:
        raise VerificationError(f"{path}: SHA-256 does not match its run's records; {advice}")
    return path


def _exported_sha(record: ExportRecord, kind: str, file: str) -> str | None:
    """The SHA-256 ``export.json`` gives the verified file ``file`` (None: not verified, or not this export's)."""
    if kind == "int8":
        int8 = record.get("int8") or {}
        return int8.get("sha256") if int8.get("file") == file and int8.get("reference", {}).get("passed") else None
    return next((o.get("sha256") for o in record["opsets"].values()
                 if isinstance(o, dict) and o.get("file") == file and o.get("passed") is True), None)


def available_models() -> list[str]:
    """``id@version`` of every model whose seed-0 ONNX file is here (zoo home, weights package, starter pack, hub
    cache), in zoo order."""
    from .zoo import get_model, list_models

    names = [get_model(i).name for i in list_models()]
    return [name for name in names if where(name) is not None]


def exported_models(runs: Path | None = None) -> list[str]:
    """Names (``id@version``) of models whose seed-0 run in the zoo home has an ONNX export."""
    root = runs_dir(runs)
    names = sorted(p.name for p in root.glob("*@*") if p.is_dir()) if root.is_dir() else []
    return [name for name in names if all((run_dir(name, DEFAULT_SEED, runs) / f).is_file() for f in (ONNX, EXPORT))]
