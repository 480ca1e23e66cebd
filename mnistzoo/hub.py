"""Hubs: directories or URLs of published model files, each listed with its SHA-256 and size in ``manifest.json``.

The published zoo, the starter pack, an installed weights package, a hub and the download cache share one
layout (format 2; format-1 manifests of older hubs are still read, as seed 0)::

    manifest.json                          {"format": "mnistzoo-hub/2", "files": [{"id", "version", "seed", "kind",
                                                                                  "file", "sha256", "size"}, ...]}
    <id>/v<version>/seed<k>/model.onnx        kind "onnx": the verified float32 export, its card embedded
    <id>/v<version>/seed<k>/model.int8.onnx   kind "int8": the verified int8 export, where the model has one
    <id>/v<version>/seed<k>/model.weights.h5  kind "weights": the trained Keras weights the files are rebuilt from
    <id>/v<version>/seed<k>/card.json         kind "card": the training card
    <id>/v<version>/seed<k>/test_data_set_0/  kinds "test_input", "test_output": 16 test images and the Keras
                                              outputs for them (ONNX Model Zoo layout), kept with the weights

A manifest's entries are checked when it is read: kinds are known, ids are zoo ids (``id@version`` names a run,
never a path), and files are relative paths inside the hub; every file's size and SHA-256 is checked before use.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from . import data
from ._checks import output_dir
from ._io import atomic_path, ensure_writable_dir, sha256_file, zoo_home
from .errors import DataError, InvalidInput, MnistZooError, VerificationError
from .runs import DEFAULT_SEED, NAME

HUB_ENV = "MNISTZOO_HUB"
HUB_FORMAT = "mnistzoo-hub/2"
OLD_FORMATS = ("mnistzoo-hub/1",)  # read as seed 0, in the layout <id>/v<version>/<file>
MANIFEST = "manifest.json"
KINDS = {"onnx": "model.onnx", "int8": "model.int8.onnx", "weights": "model.weights.h5", "card": "card.json",
         "test_input": "test_data_set_0/input_0.pb", "test_output": "test_data_set_0/output_0.pb",
         "keras": "model.keras"}  # "keras" (a whole saved model) is only in format-1 hubs
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class HubFile:
    """One manifest entry: a file of a model version's seed, with the hash and size it must have."""

    id: str
    version: int
    kind: str
    file: str
    sha256: str
    size: int
    seed: int = DEFAULT_SEED

    @property
    def name(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def key(self) -> tuple[str, int, int, str]:
        return self.id, self.version, self.seed, self.kind


def layout(model_id: str, version: int, seed: int, kind: str) -> str:
    """Where a file lives in a format-2 hub."""
    return f"{model_id}/v{version}/seed{seed}/{KINDS[kind]}"


def read_manifest(text: str, origin: str) -> list[HubFile]:
    """Parse and check a manifest (format 2, or 1 as seed 0); file paths must stay inside the hub."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") not in (HUB_FORMAT, *OLD_FORMATS):
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"format is {found!r}, expected {HUB_FORMAT!r}")
        entries = [_entry(e) for e in doc["files"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"{origin}: not a valid mnistzoo hub manifest ({type(exc).__name__}: {exc}); "
                           "write hubs with `mnistzoo publish`") from None
    for e in entries:
        rel = PurePosixPath(e.file)
        if (e.kind not in KINDS or rel.is_absolute() or ".." in rel.parts or not rel.parts or "\\" in e.file
                or not NAME.fullmatch(e.name) or len(e.sha256) != 64):
            raise InvalidInput(f"{origin}: bad entry for {e.id!r} version {e.version} (kind {e.kind!r}, file "
                               f"{e.file!r}); ids are zoo ids, kinds are {', '.join(KINDS)} and files are relative "
                               "paths inside the hub")
    return entries


def _entry(e: dict) -> HubFile:
    """One manifest entry with its JSON types checked (an int is never a bool or a string here)."""
    fields = {"id": str, "version": int, "kind": str, "file": str, "sha256": str, "size": int, "seed": int}
    values = {key: e[key] for key in fields if key in e}
    for key, kind in fields.items():
        if key in values and (not isinstance(values[key], kind) or isinstance(values[key], bool)):
            raise TypeError(f"{key!r} is {type(values[key]).__name__}, expected {kind.__name__}")
    if values.get("seed", 0) < 0 or values["version"] < 1 or values["size"] < 0:
        raise ValueError("seed, version or size out of range")
    return HubFile(**values)


def load_manifest(directory: Path) -> list[HubFile]:
    """The entries of ``directory/manifest.json`` ([] when there is none)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"{path}: over {MAX_MANIFEST_BYTES:,} bytes, not a manifest; write hubs with "
                           "`mnistzoo publish`")
    return read_manifest(path.read_text(encoding="utf-8", errors="replace"), str(path))


def manifest_text(entries: list[HubFile]) -> str:
    """A format-2 manifest's text, entries sorted: the same entries always give the same bytes."""
    rows = [asdict(e) for e in sorted(entries, key=lambda e: e.key)]
    return json.dumps({"format": HUB_FORMAT, "files": rows}, indent=2) + "\n"


def write_manifest(directory: Path, entries: list[HubFile]) -> None:
    with atomic_path(Path(directory) / MANIFEST) as tmp:
        tmp.write_text(manifest_text(entries))


def find(directory: Path, model_id: str, version: int, kind: str, seed: int = DEFAULT_SEED) -> Path | None:
    """The ``kind`` file of a model version's seed listed in ``directory``'s manifest, after its size and SHA-256
    matched; None where it is not listed."""
    entry = next((e for e in load_manifest(directory) if e.key == (model_id, version, seed, kind)), None)
    if entry is None:
        return None
    path = Path(directory) / entry.file
    verify(path, entry, f"delete {Path(directory)} and fetch or install it again")
    return path


def verify(path: Path, entry: HubFile, advice: str) -> None:
    """Refuse a file that is missing, not a regular file, or not the size and SHA-256 its manifest lists."""
    if not path.is_file():
        raise VerificationError(f"{path}: listed in its manifest but missing; {advice}")
    if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
        raise VerificationError(f"{path}: size or SHA-256 does not match its manifest, the file was altered or "
                                f"corrupted; refusing to load it; {advice}")


# ----------------------------------------------------------------------------- remote hubs and the download cache


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
        return read_manifest(path.read_text(encoding="utf-8", errors="replace"), _url(root, MANIFEST))


def cache_dir() -> Path:
    """Where files pulled from a hub are kept: a hub of their own."""
    return zoo_home() / "hub"


def download(root: str, entries: list[HubFile]) -> dict[str, Path]:
    """Download ``entries`` (one model version's seed) into the cache, each checked by SHA-256 before it is
    listed in the cache's manifest; the paths by kind."""
    dest = ensure_writable_dir(cache_dir(), "hub cache")
    local = []
    for e in entries:
        rel = layout(e.id, e.version, e.seed, e.kind)
        with atomic_path(dest / rel) as tmp:
            _download(root, e.file, tmp)
            verify(tmp, e, f"the hub's copy of {e.file} is bad; republish it")
        local.append(HubFile(e.id, e.version, e.kind, rel, e.sha256, e.size, e.seed))
    done = {e.key for e in local}
    write_manifest(dest, [e for e in load_manifest(dest) if e.key not in done] + local)
    return {e.kind: dest / e.file for e in local}


def pull(model_id: str, version: int, root: str | None = None, seed: int = DEFAULT_SEED) -> dict[str, Path]:
    """Download every file of a model version's seed from the hub into the cache, each checked by SHA-256."""
    root = root or os.environ.get(HUB_ENV)
    if not root:
        raise MnistZooError(f"no hub: set {HUB_ENV} to a hub directory or URL (one written by `mnistzoo publish`)")
    entries = [e for e in hub_manifest(root) if (e.id, e.version, e.seed) == (model_id, version, seed)]
    if not entries:
        raise MnistZooError(f"the hub {root} has no {model_id}@{version} seed {seed}; `mnistzoo publish` it there "
                            "first")
    return download(root, entries)


# ----------------------------------------------------------------------------- writing a hub


def put_files(directory: Path, files: dict[tuple[str, int, int, str], Path]) -> list[HubFile]:
    """Copy ``files`` (by (id, version, seed, kind)) into their places in the hub ``directory``, each atomically;
    their entries (the manifest is not touched: what is not listed there is not published)."""
    output_dir(Path(directory), "DIR")
    directory = ensure_writable_dir(Path(directory), "hub directory")
    entries = []
    for (model_id, version, seed, kind), source in files.items():
        rel = layout(model_id, version, seed, kind)
        with atomic_path(directory / rel) as tmp:
            shutil.copyfile(source, tmp)
            entries.append(HubFile(model_id, version, kind, rel, sha256_file(tmp), tmp.stat().st_size, seed))
    return entries


def merged(old: list[HubFile], new: list[HubFile]) -> list[HubFile]:
    """``old`` entries with every (model, version, seed) that ``new`` lists replaced by its new entries."""
    done = {(e.id, e.version, e.seed) for e in new}
    return [e for e in old if (e.id, e.version, e.seed) not in done] + new


def copy_into(directory: Path, files: dict[tuple[str, int, int, str], Path]) -> list[HubFile]:
    """:func:`put_files`, then (re)write the hub's manifest; entries of other models already there are kept, so a
    hub can grow one model at a time. Returns the new entries."""
    new = put_files(directory, files)
    write_manifest(Path(directory), merged(load_manifest(Path(directory)), new))
    return new
