"""Weights packages: the published zoo as pip-installable wheels, in the manner of spaCy's ``spacy package``.

``mnistzoo package ZOO --out DIR`` writes one wheel per study and purpose from a published zoo (a hub directory)::

    mnistzoo-weights-<study>         the float32 and int8 ONNX files, cards and test vectors: what inference needs
    mnistzoo-weights-<study>-keras   the Keras weights files and cards: for ``load_pretrained(..., backend="keras")``

Each wheel holds a package ``mnistzoo_weights_<study>[_keras]`` whose ``zoo/`` folder is a hub (its own
``manifest.json``), and registers it under the entry-point group ``mnistzoo.weights``. Installed, its models are
found by ``load_pretrained``, ``mnistzoo predict``, ``eval``, ``serve`` and ``list`` with no network; finding them
reads entry-point metadata and manifests only (no package code runs), and every file is checked by SHA-256 when it
is loaded. Wheels are written byte for byte the same from the same zoo (sorted entries, fixed timestamps).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import importlib.util
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ._checks import output_dir
from ._io import atomic_path
from .errors import InvalidInput
from .hub import MANIFEST, HubFile, load_manifest, manifest_text

ENTRY_POINTS = "mnistzoo.weights"
ZOO = "zoo"
INFERENCE_KINDS, KERAS_KINDS = ("onnx", "int8", "card", "test_input", "test_output"), ("weights", "card")
MAX_WHEEL_BYTES = 100_000_000  # the usual package index limit per file
_EPOCH = (1980, 1, 1, 0, 0, 0)


@functools.lru_cache(maxsize=1)
def installed() -> tuple[tuple[str, Path], ...]:
    """(distribution, hub folder) of every installed weights package, without importing any of them (read once a
    process)."""
    found = []
    for point in importlib.metadata.entry_points(group=ENTRY_POINTS):
        spec = importlib.util.find_spec(point.value) if point.value.isidentifier() else None
        locations = list(spec.submodule_search_locations or []) if spec else []
        if locations and (Path(locations[0]) / ZOO / MANIFEST).is_file():
            found.append((point.dist.name if point.dist else point.value, Path(locations[0]) / ZOO))
    return tuple(sorted(found))


@functools.lru_cache(maxsize=1)
def _index() -> dict[tuple[str, int, int, str], tuple[Path, HubFile]]:
    return {entry.key: (folder, entry) for _, folder in installed() for entry in load_manifest(folder)}


def find_installed(model_id: str, version: int, kind: str, seed: int) -> tuple[Path, HubFile] | None:
    """The installed weights package folder and entry listing a file, if any (not yet verified)."""
    return _index().get((model_id, version, seed, kind))


def groups(entries: list[HubFile], study_of: dict[str, str]) -> dict[str, list[HubFile]]:
    """The zoo's entries split into packages: by study, inference files apart from Keras weights."""
    packs: dict[str, list[HubFile]] = {}
    for e in entries:
        study = study_of[e.id]
        for suffix, kinds in (("", INFERENCE_KINDS), ("-keras", KERAS_KINDS)):
            if e.kind in kinds:
                packs.setdefault(f"mnistzoo-weights-{study}{suffix}", []).append(e)
    return dict(sorted(packs.items()))


def build_wheels(zoo: Path, out: Path, version: str) -> list[Path]:
    """Write a wheel per group of the published zoo in ``zoo`` into ``out``; the wheels' paths."""
    from .zoo import get_model

    entries = load_manifest(Path(zoo))
    if not entries:
        raise InvalidInput(f"{zoo} holds no published zoo (no {MANIFEST}); write one with `mnistzoo publish`")
    output_dir(Path(out), "--out")
    Path(out).mkdir(parents=True, exist_ok=True)
    study_of = {e.id: get_model(e.name).study for e in entries}
    return [_wheel(Path(zoo), Path(out), dist, files, version) for dist, files in groups(entries, study_of).items()]


def _wheel(zoo: Path, out: Path, dist: str, entries: list[HubFile], version: str) -> Path:
    package = dist.replace("-", "_")
    info = f"{package}-{version}.dist-info"
    models = sorted({e.name for e in entries})
    files: dict[str, bytes] = {
        f"{package}/__init__.py": f'"""mnistzoo published weights: {dist} (data only; see mnistzoo.packages)."""\n'
                                  .encode(),
        f"{package}/{ZOO}/{MANIFEST}": manifest_text(entries).encode()}
    for e in entries:
        files[f"{package}/{ZOO}/{e.file}"] = (zoo / e.file).read_bytes()
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
                                 f"Summary: mnistzoo published files of {len(models)} models: {', '.join(models)}\n"
                                 "License: MIT\nRequires-Python: >=3.11\nRequires-Dist: mnistzoo\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: mnistzoo\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = f"[{ENTRY_POINTS}]\n{dist} = {package}\n".encode()
    record = "".join(f"{name},sha256={_digest(blob)},{len(blob)}\n" for name, blob in sorted(files.items()))
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = out / f"{package}-{version}-py3-none-any.whl"
    with atomic_path(path, suffix=".whl") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as wheel:
            for name, blob in _ordered(files):
                entry = zipfile.ZipInfo(name, _EPOCH)
                entry.external_attr, entry.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
                wheel.writestr(entry, blob)
        if tmp.stat().st_size > MAX_WHEEL_BYTES:
            raise InvalidInput(f"{path.name} would be {tmp.stat().st_size:,} bytes, over the {MAX_WHEEL_BYTES:,} "
                               "a package index takes; split its models into smaller groups")
    return path


def _ordered(files: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """Files first in name order, the dist-info last, RECORD at the very end (as wheel tools expect)."""
    yield from sorted(files.items(), key=lambda item: (".dist-info/" in item[0], item[0].endswith("/RECORD"), item[0]))


def _digest(blob: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(blob).digest()).rstrip(b"=").decode()
