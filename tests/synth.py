"""Small synthetic datasets in every file format the data layer reads."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from mnistzoo import data


def tiny_arrays(seed: int = 0, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    """A small random dataset in the real layout."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    """Write the four IDX files of ``arrays`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in data.IDX_STEMS.items():
        raw = idx_bytes(arrays[key])
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)
    return directory


def write_mnist_pickle(path: Path, arrays: dict[str, np.ndarray], n_valid: int = 2) -> Path:
    """Write arrays in the classic mnist.pkl.gz layout: (train, valid, test), pixels / 256, float32."""
    def images(x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), 784).astype(np.float32) / 256).astype(np.float32)

    x_tr, y_tr = arrays["x_train"], arrays["y_train"].astype(np.int64)
    cut = len(x_tr) - n_valid
    splits = ((images(x_tr[:cut]), y_tr[:cut]), (images(x_tr[cut:]), y_tr[cut:]),
              (images(arrays["x_test"]), arrays["y_test"].astype(np.int64)))
    path.write_bytes(gzip.compress(pickle.dumps(splits, protocol=2)))
    return path


def tiny_spec(arrays: dict[str, np.ndarray], sources: tuple = (), name: str = "mnist") -> data.DatasetSpec:
    """A DatasetSpec whose hashes are those of ``arrays``."""
    return data.DatasetSpec(
        name=name,
        class_names=tuple(str(i) for i in range(10)),
        sha256={k: data.array_sha256(v) for k, v in arrays.items()},
        sources=sources,
        n_train=len(arrays["x_train"]),
        n_test=len(arrays["x_test"]),
    )
