"""Ready-to-use trained models: ``load_pretrained``, the shipped starter pack, and hubs of verified files.

``load_pretrained("mlp3_dropout_bn")`` looks for ``id@version`` (default: the latest version) in order:

1. the local zoo home: a run the user trained and exported (``$MNISTZOO_HOME/runs/<id>@<v>/seed<k>/``),
   checked against the hashes in its ``export.json`` and ``card.json``;
2. the starter pack shipped inside the package (``mnistzoo/starter/``);
3. the hub named by ``MNISTZOO_HUB``, a directory or URL; files are downloaded once into
   ``$MNISTZOO_HOME/hub/<id>/v<version>/``.

``seed`` (default 0) picks which training run; the starter pack and hubs hold seed 0 only, so
another seed comes from the zoo home (``mnistzoo build ID --seeds K``).

Every file is checked by SHA-256 (and size) before use; a mismatch refuses to load. The starter
pack, a hub and the download cache share one layout, written by :func:`publish`::

    manifest.json                     {"format": "mnistzoo-hub/1", "files": [{"id", "version", "kind",
                                                                             "file", "sha256", "size"}, ...]}
    <id>/v<version>/model.onnx        kind "onnx": the verified float32 export, its card embedded
    <id>/v<version>/model.keras       kind "keras": the trained checkpoint (not in the starter pack)
    <id>/v<version>/card.json         kind "card": the training card
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from . import data
from ._checks import output_dir
from ._checks import seed as check_seed
from ._io import atomic_path, ensure_writable_dir, sha256_file, zoo_home
from .errors import DataError, InvalidInput, MnistZooError, VerificationError
from .preparation import as_images
from .records import ExportRecord, TrainCard, read_record
from .runs import DEFAULT_SEED, run_dir, runs_dir
from .runtime import open_model
from .zoo.registry import get_model_class

HUB_ENV = "MNISTZOO_HUB"
HUB_FORMAT = "mnistzoo-hub/1"
MANIFEST = "manifest.json"
KINDS = {"onnx": "model.onnx", "keras": "model.keras", "card": "card.json"}
STARTER = Path(__file__).with_name("starter")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubFile:
    """One manifest entry: a file of a model version, with the hash and size it must have."""

    id: str
    version: int
    kind: str
    file: str
    sha256: str
    size: int


# ----------------------------------------------------------------------------- images


# ----------------------------------------------------------------------------- the classifier


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


def load_pretrained(model_id: str, version: int | None = None, backend: str = "onnx",
                    seed: int = DEFAULT_SEED) -> Any:
    """A trained model, ready to use: a :class:`Classifier` (``backend="onnx"``) or a Keras model.

    Looks in the zoo home, then the starter pack, then ``MNISTZOO_HUB``; every file is checked by
    SHA-256 first. Raises :class:`MnistZooError` when the model is nowhere (naming the commands
    that make it) and :class:`VerificationError` when a file does not match its hash.
    """
    if backend not in ("onnx", "keras"):
        raise MnistZooError(f"unknown backend {backend!r}; choose onnx or keras")
    if version is not None and "@" in model_id:
        raise MnistZooError(f"give the version once: '{model_id}' or version={version}, not both")
    path, source = locate(model_id if version is None else f"{model_id}@{version}", backend, seed)
    if backend == "keras":
        import keras

        return keras.models.load_model(path)  # safe mode: no code is deserialised
    classifier = Classifier(path, source)
    if not classifier.card.get("recipe_is_original", False):
        log.warning("warning: %s from %s was not trained with its full recipe (recipe %s)",
                    classifier.card["name"], source, classifier.card["recipe"])
    return classifier


# ----------------------------------------------------------------------------- resolution


def _resolve(name: str) -> tuple[str, int]:
    cls = get_model_class(name)
    return cls.id, cls.version


def locate(name: str, kind: str = "onnx", seed: int = DEFAULT_SEED) -> tuple[Path, str]:
    """The verified ``kind`` file of ``id[@version]``'s ``seed`` run and where it was found."""
    model_id, version = _resolve(name)
    check_seed(seed)
    path = _in_runs(model_id, version, kind, seed=seed)
    if path is not None:
        return path, "zoo home"
    if seed != DEFAULT_SEED:
        raise MnistZooError(f"{model_id}@{version} seed {seed} ({kind}) is not in the zoo home ({runs_dir()}); the "
                            f"starter pack and hubs hold seed {DEFAULT_SEED} only; make it with "
                            f"`mnistzoo build {model_id} --seeds {seed}`")
    for source, finder in (("starter pack", _in_starter), ("hub", _in_hub)):
        path = finder(model_id, version, kind)
        if path is not None:
            return path, source
    hub = os.environ.get(HUB_ENV)
    where = f"the hub {hub}" if hub else f"a hub ({HUB_ENV} is not set)"
    make = f"mnistzoo train {model_id}" + ("" if kind == "keras" else f" && mnistzoo export {model_id}")
    raise MnistZooError(f"{model_id}@{version} ({kind}) is not in the zoo home ({runs_dir()}), the starter pack or "
                        f"{where}; make it with `{make}`")


def _in_runs(model_id: str, version: int, kind: str, runs: Path | None = None,
             seed: int = DEFAULT_SEED) -> Path | None:
    """A finished (and for ONNX, exported) run, checked against the hash its records hold."""
    run = run_dir(f"{model_id}@{version}", seed, runs)
    path = run / KINDS[kind]
    if not (run / "card.json").is_file() or not path.is_file():
        return None
    if kind == "onnx":
        if not (run / "export.json").is_file():
            return None
        record = read_record(run / "export.json", ExportRecord, f"re-export with `mnistzoo export {model_id}`")
        expected = next((o.get("sha256") for o in record.get("opsets", {}).values()
                         if o.get("file") == path.name and o.get("passed")), None)
        if expected is None:
            return None
        advice = f"re-export with `mnistzoo export {model_id}`"
    elif kind == "keras":
        expected = read_record(run / "card.json", TrainCard, f"retrain with `mnistzoo train {model_id} --force`")[
            "model_sha256"]
        advice = f"retrain with `mnistzoo train {model_id} --force`"
    else:
        return path
    if sha256_file(path) != expected:
        raise VerificationError(f"{path}: SHA-256 does not match its run's records; {advice}")
    return path


def _in_starter(model_id: str, version: int, kind: str) -> Path | None:
    return _in_directory(STARTER, model_id, version, kind)


def _in_hub(model_id: str, version: int, kind: str) -> Path | None:
    root = os.environ.get(HUB_ENV)
    if not root:
        return None
    cached = _in_directory(cache_dir(model_id, version), model_id, version, kind)
    if cached is not None:
        return cached
    entries = [e for e in hub_manifest(root) if (e.id, e.version) == (model_id, version)]
    if not any(e.kind == kind for e in entries):
        return None
    return _download_model(root, entries)[kind]


def _in_directory(directory: Path, model_id: str, version: int, kind: str) -> Path | None:
    """A file listed in ``directory/manifest.json``, after its size and SHA-256 matched."""
    if not (directory / MANIFEST).is_file():
        return None
    entries = read_manifest((directory / MANIFEST).read_text(), str(directory / MANIFEST))
    entry = next((e for e in entries if (e.id, e.version, e.kind) == (model_id, version, kind)), None)
    if entry is None:
        return None
    path = directory / entry.file
    _verify(path, entry, f"delete {path} and fetch it again")
    return path


def _verify(path: Path, entry: HubFile, advice: str) -> None:
    if not path.is_file():
        raise VerificationError(f"{path}: listed in its manifest but missing; {advice}")
    if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
        raise VerificationError(f"{path}: size or SHA-256 does not match its manifest, the file was altered or "
                                f"corrupted; refusing to load it; {advice}")


# ----------------------------------------------------------------------------- manifests and hubs


def read_manifest(text: str, origin: str) -> list[HubFile]:
    """Parse and check a manifest; file paths must stay inside the hub."""
    try:
        doc = json.loads(text)
        if doc.get("format") != HUB_FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {HUB_FORMAT!r}")
        entries = [HubFile(id=str(e["id"]), version=int(e["version"]), kind=str(e["kind"]), file=str(e["file"]),
                           sha256=str(e["sha256"]), size=int(e["size"])) for e in doc["files"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MnistZooError(f"{origin}: not a valid mnistzoo hub manifest ({type(exc).__name__}: {exc}); "
                            "write hubs with `mnistzoo publish`") from None
    for e in entries:
        rel = PurePosixPath(e.file)
        if e.kind not in KINDS or rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise MnistZooError(f"{origin}: bad entry for {e.id}@{e.version} (kind {e.kind!r}, file {e.file!r}); "
                                f"kinds are {', '.join(KINDS)} and files must be relative paths inside the hub")
    return entries


def _write_manifest(directory: Path, entries: list[HubFile]) -> None:
    doc = {"format": HUB_FORMAT, "files": [asdict(e) for e in sorted(entries, key=lambda e: (e.id, e.version, e.kind))]}
    with atomic_path(directory / MANIFEST) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")


def _url(root: str, rel: str) -> str:
    base = root if "://" in root else Path(root).expanduser().resolve().as_uri()
    if urllib.parse.urlsplit(base).scheme not in ("file", "http", "https"):
        raise MnistZooError(f"{HUB_ENV}={root}: a hub is a directory or a file://, http:// or https:// URL")
    return base.rstrip("/") + "/" + urllib.parse.quote(rel)


def _download(root: str, rel: str, dest: Path) -> None:
    try:
        data.download(_url(root, rel), dest, lambda *_: None)
    except DataError as exc:
        raise MnistZooError(f"hub {root}: {exc}; check {HUB_ENV}") from None


def hub_manifest(root: str) -> list[HubFile]:
    """The entries of the hub at ``root`` (a directory or URL)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MANIFEST
        _download(root, MANIFEST, path)
        return read_manifest(path.read_text(), _url(root, MANIFEST))


def cache_dir(model_id: str, version: int) -> Path:
    """Where files pulled from a hub are kept."""
    return zoo_home() / "hub" / model_id / f"v{version}"


def pull(name: str, hub: str | None = None) -> dict[str, Path]:
    """Download every file of ``id[@version]`` from the hub into the cache, each checked by SHA-256."""
    root = hub or os.environ.get(HUB_ENV)
    if not root:
        raise MnistZooError(f"no hub: set {HUB_ENV} to a hub directory or URL (one written by `mnistzoo publish`)")
    model_id, version = _resolve(name)
    entries = [e for e in hub_manifest(root) if (e.id, e.version) == (model_id, version)]
    if not entries:
        raise MnistZooError(f"the hub {root} has no {model_id}@{version}; `mnistzoo publish` it there first")
    return _download_model(root, entries)


def _download_model(root: str, entries: list[HubFile]) -> dict[str, Path]:
    """Download one model version's files into its cache directory, each checked, then its manifest."""
    dest = ensure_writable_dir(cache_dir(entries[0].id, entries[0].version), "hub cache")
    local = []
    for e in entries:
        target = dest / KINDS[e.kind]
        with atomic_path(target) as tmp:
            _download(root, e.file, tmp)
            _verify(tmp, e, f"the hub's copy of {e.file} is bad; republish it")
        local.append(HubFile(e.id, e.version, e.kind, target.name, e.sha256, e.size))
    _write_manifest(dest, local)
    return {e.kind: dest / e.file for e in local}


def published_runs(runs: Path | None = None) -> list[str]:
    """Names (``id@version``) of models whose seed-0 run in the zoo home has an ONNX export."""
    names = sorted(p.name for p in runs_dir(runs).glob("*@*") if p.is_dir())
    return [name for name in names
            if all((run_dir(name, DEFAULT_SEED, runs) / f).is_file() for f in ("model.onnx", "export.json"))]


def publish(directory: Path, names: list[str] | None = None, *, runs: Path | None = None,
            kinds: tuple[str, ...] = tuple(KINDS)) -> list[HubFile]:
    """Copy exported runs (default: all) into a hub directory and (re)write its manifest.

    Entries of other models already in the hub are kept, so a hub can grow one model at a time.
    """
    output_dir(Path(directory), "DIR")
    names = names or published_runs(runs)
    if not names:
        raise MnistZooError(f"no exported models in {runs_dir(runs)}; run `mnistzoo train ID && mnistzoo export ID` "
                            "first")
    directory = ensure_writable_dir(Path(directory), "hub directory")
    old = read_manifest((directory / MANIFEST).read_text(), str(directory / MANIFEST)) \
        if (directory / MANIFEST).is_file() else []
    new = []
    for name in dict.fromkeys(names):
        model_id, version = _resolve(name)
        for kind in kinds:
            source = _in_runs(model_id, version, kind, runs)
            if source is None and kind == "onnx":
                raise MnistZooError(f"{model_id}@{version} has no verified ONNX export in {runs_dir(runs)}; run "
                                    f"`mnistzoo export {model_id}` first")
            if source is None:
                continue
            rel = f"{model_id}/v{version}/{KINDS[kind]}"
            with atomic_path(directory / rel) as tmp:
                shutil.copyfile(source, tmp)
                new.append(HubFile(model_id, version, kind, rel, sha256_file(tmp), tmp.stat().st_size))
    done = {(e.id, e.version) for e in new}
    _write_manifest(directory, [e for e in old if (e.id, e.version) not in done] + new)
    return new
