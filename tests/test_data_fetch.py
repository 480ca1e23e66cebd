"""Source fallback order, verification, caching and the errors of ``mnistzoo.data.fetch``."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mnistzoo import data
from mnistzoo._io import sha256_file
from mnistzoo.errors import DataError, MnistZooError
from synth import tiny_arrays, tiny_spec, write_idx_dir


@dataclass
class FakeSource:
    """A source returning fixed arrays, or failing; records each call."""

    label: str
    arrays: dict | None = None
    calls: list = field(default_factory=list)

    def fetch(self, workdir: Path, report) -> dict:
        self.calls.append(workdir)
        if self.arrays is None:
            raise DataError(f"{self.label} unreachable (no network)")
        return self.arrays


@pytest.fixture
def use_spec(monkeypatch: pytest.MonkeyPatch):
    """Replace the real dataset specs with one synthetic spec."""
    def install(spec: data.DatasetSpec) -> data.DatasetSpec:
        monkeypatch.setattr(data, "_specs", lambda: {spec.name: spec})
        return spec
    return install


def cache_dir_entries() -> list[str]:
    folder = data.cache_path("mnist").parent
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_first_verified_source_wins_in_order(use_spec) -> None:
    good = tiny_arrays()
    down, mirror, last = FakeSource("down"), FakeSource("mirror", good), FakeSource("last", good)
    use_spec(tiny_spec(good, (down, mirror, last)))
    ds = data.fetch("mnist")
    assert (len(down.calls), len(mirror.calls), len(last.calls)) == (1, 1, 0)
    assert ds.source == "mirror"
    np.testing.assert_array_equal(ds.x_train, good["x_train"])
    assert cache_dir_entries() == ["mnist.npz"]


def test_source_with_wrong_content_is_skipped(use_spec) -> None:
    good = tiny_arrays()
    forged = tiny_arrays(seed=1)
    wrong, right = FakeSource("wrong", forged), FakeSource("right", good)
    use_spec(tiny_spec(good, (wrong, right)))
    assert data.fetch("mnist").source == "right"


def test_cache_is_reused_and_reverified(use_spec) -> None:
    good = tiny_arrays()
    src = FakeSource("only", good)
    use_spec(tiny_spec(good, (src,)))
    data.fetch("mnist")
    loaded = data.load("mnist")
    assert len(src.calls) == 1 and loaded.source == "only"
    assert loaded.hashes() == {k: data.array_sha256(v) for k, v in good.items()}

    # A tampered cache fails verification and is fetched again.
    np.savez(data.cache_path("mnist"), **(good | {"y_test": good["y_test"][::-1].copy()}), source=np.array("x"))
    assert data.info("mnist")["verified"] is False
    data.load("mnist")
    assert len(src.calls) == 2 and data.info("mnist")["verified"] is True


def test_every_source_failing_lists_each_and_writes_nothing(use_spec) -> None:
    good = tiny_arrays()
    use_spec(tiny_spec(good, (FakeSource("canonical"), FakeSource("mirror", tiny_arrays(seed=7)))))
    with pytest.raises(DataError) as err:
        data.fetch("mnist")
    message = str(err.value)
    assert "\n" not in message
    assert "[canonical] canonical unreachable" in message
    assert "[mirror] mirror: x_train has SHA-256" in message
    assert "--from PATH" in message
    assert cache_dir_entries() == []


def test_from_path_is_the_only_source_and_must_verify(use_spec, tmp_path: Path) -> None:
    good = tiny_arrays()
    network = FakeSource("network", good)
    use_spec(tiny_spec(good, (network,)))
    ds = data.fetch("mnist", from_path=write_idx_dir(tmp_path / "idx", good))
    assert ds.source.startswith("--from") and network.calls == []

    with pytest.raises(DataError, match="this is not the real mnist"):
        data.fetch("mnist", from_path=write_idx_dir(tmp_path / "other", tiny_arrays(seed=3)))
    assert data.info("mnist")["verified"] is True  # the good cache was not touched


def test_unknown_dataset_suggests_closest() -> None:
    with pytest.raises(DataError, match="unknown dataset 'fashion-mnist'; did you mean 'fashion_mnist'"):
        data.load("fashion-mnist")


def test_cache_dir_that_is_a_file(use_spec, zoo_home: Path) -> None:
    good = tiny_arrays()
    use_spec(tiny_spec(good, (FakeSource("s", good),)))
    zoo_home.parent.mkdir(exist_ok=True)
    zoo_home.write_text("not a directory")
    with pytest.raises(MnistZooError, match="is not writable.*set MNISTZOO_HOME"):
        data.fetch("mnist")


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1 for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_canonical_downloads_over_http(http_dir, use_spec) -> None:
    root, url = http_dir
    good = tiny_arrays()
    np.savez(root / "mnist.npz", **good)
    write_idx_dir(root, good)
    npz = data.KerasNpzDownload(url + "mnist.npz", sha256_file(root / "mnist.npz"))
    use_spec(tiny_spec(good, (npz,)))
    assert data.fetch("mnist").source == f"canonical download {url}mnist.npz"

    use_spec(tiny_spec(good, (data.IdxDownload(url),)))
    assert data.fetch("mnist", force=True).source.startswith("canonical download")


def test_npz_download_with_wrong_file_hash_is_refused(http_dir, use_spec) -> None:
    root, url = http_dir
    good = tiny_arrays()
    np.savez(root / "mnist.npz", **good)
    use_spec(tiny_spec(good, (data.KerasNpzDownload(url + "mnist.npz", "0" * 64),)))
    with pytest.raises(DataError, match="mnist.npz has SHA-256 [0-9a-f]{64}, expected 0{64}"):
        data.fetch("mnist")


def test_unreachable_download_says_so(use_spec) -> None:
    good = tiny_arrays()
    use_spec(tiny_spec(good, (data.IdxDownload("http://127.0.0.1:9/"),)))
    with pytest.raises(DataError, match=r"http://127.0.0.1:9/train-images-idx3-ubyte.gz unreachable"):
        data.fetch("mnist")


def test_debian_source_reads_installed_files(tmp_path: Path, use_spec) -> None:
    good = tiny_arrays()
    installed = write_idx_dir(tmp_path / "usr/share/datasets/x", good)
    use_spec(tiny_spec(good, (data.DebianPackage("no-such-package", str(installed)),)))
    assert data.fetch("mnist").source == "Debian package no-such-package"
