"""Parsers for IDX, npz and the classic MNIST pickle, on small synthetic files, corrupt ones included."""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from mnistzoo import data
from mnistzoo.errors import DataError
from synth import idx_bytes, tiny_arrays, write_idx_dir, write_mnist_pickle


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dir_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = tiny_arrays()
    got = data.read_idx_dir(write_idx_dir(tmp_path, arrays, gz=gz))
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == np.uint8


def test_idx_wrong_magic(tmp_path: Path) -> None:
    raw = bytearray(idx_bytes(tiny_arrays()["y_train"]))
    raw[2] = 0x0D  # float32 type code: not unsigned bytes
    with pytest.raises(DataError, match="magic 00000d01"):
        data.parse_idx(bytes(raw), "f")


def test_idx_dimensions_disagree_with_payload() -> None:
    raw = idx_bytes(tiny_arrays()["x_train"])
    with pytest.raises(DataError, match=r"dimensions \(6, 28, 28\) need 4704 bytes of data, found 4703"):
        data.parse_idx(raw[:-1], "f")


def test_idx_images_with_wrong_image_size(tmp_path: Path) -> None:
    arrays = tiny_arrays()
    arrays["x_test"] = np.zeros((4, 27, 28), np.uint8)
    with pytest.raises(DataError, match="28x28"):
        data.read_idx_dir(write_idx_dir(tmp_path, arrays))


def test_idx_dir_missing_file(tmp_path: Path) -> None:
    write_idx_dir(tmp_path, tiny_arrays())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.read_idx_dir(tmp_path)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(tiny_arrays()["x_train"]))[:-20])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        data.read_maybe_gzip(path)


def test_npz_round_trip_and_errors(tmp_path: Path) -> None:
    arrays = tiny_arrays()
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    np.testing.assert_array_equal(data.read_npz(good)["x_test"], arrays["x_test"])

    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=arrays["x_train"])
    with pytest.raises(DataError, match="lacks y_train, x_test, y_test"):
        data.read_npz(partial)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        data.read_npz(truncated)

    objects = tmp_path / "objects.npz"
    np.savez(objects, **(arrays | {"y_test": np.array([object()] * 4)}))
    with pytest.raises(DataError, match="corrupt npz"):
        data.read_npz(objects)


def test_mnist_pickle_recovers_exact_pixels(tmp_path: Path) -> None:
    arrays = tiny_arrays()
    got = data.read_mnist_pickle(write_mnist_pickle(tmp_path / "mnist.pkl.gz", arrays))
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)


def test_pickle_with_foreign_global_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned > /dev/null",))

    path = tmp_path / "evil.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(Evil(), protocol=2)))
    with pytest.raises(DataError, match="forbidden global posix.system"):
        data.read_mnist_pickle(path)


def test_truncated_pickle(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pickle.dump(((np.zeros((2, 784), np.float32), np.zeros(2)),) * 3, buf, protocol=2)
    path = tmp_path / "short.pkl"
    path.write_bytes(buf.getvalue()[:-50])
    with pytest.raises(DataError, match="truncated, corrupt or unsafe pickle"):
        data.read_mnist_pickle(path)


def test_pickle_with_wrong_structure(tmp_path: Path) -> None:
    path = tmp_path / "flat.pkl"
    path.write_bytes(pickle.dumps(np.zeros(3), protocol=2))
    with pytest.raises(DataError, match="three \\(images, labels\\) pairs"):
        data.read_mnist_pickle(path)


def test_array_hash_is_of_c_order_bytes() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert data.array_sha256(a) == data.array_sha256(np.asfortranarray(a))
    assert data.array_sha256(a) != data.array_sha256(a.T.copy())
