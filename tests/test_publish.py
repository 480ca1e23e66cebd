"""The published zoo: rebuilt byte for byte from the committed checkpoints, packaged as weights wheels that a plain
install loads offline, and the starter pack one source with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import assert_one_line_error, run_cli
from homes import using_home
from mnistzoo import VerificationError, hub, pretrained
from mnistzoo._io import sha256_file
from mnistzoo.errors import InvalidInput, NotFound
from mnistzoo.packages import build_wheels, groups
from mnistzoo.publish import committed_models, rebuild
from mnistzoo.zoo import get_model_class

ROOT = Path(__file__).resolve().parent.parent
RESULTS, MANIFEST = ROOT / "results", ROOT / "published" / "manifest.json"
# CI rebuilds a few models of different kinds (the full rebuild is `make weights`): a softmax regression without
# an int8 file, an MLP with BatchNorm and an int8 file, a CNN with an int8 file.
CI_MODELS = ("softmax_sgd", "mlp3_dropout_bn", "cnn3_k5")


@pytest.fixture(scope="session")
def published(mnist_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CI models' published zoo, rebuilt from results/ and checked against the committed manifest."""
    from mnistzoo import data

    out = tmp_path_factory.mktemp("zoo")
    with using_home(mnist_home):
        data.load("fashion_mnist")
        rebuild(RESULTS, out, list(CI_MODELS), manifest=MANIFEST)  # raises VerificationError on any other byte
    return out


def test_every_committed_checkpoint_is_in_the_committed_manifest() -> None:
    entries = hub.read_manifest(MANIFEST.read_text(), str(MANIFEST))
    names = {e.name for e in entries}
    assert set(committed_models(RESULTS)) == names and set(f"{m}@1" for m in CI_MODELS) <= names
    for e in entries:
        if e.kind in ("weights", "card", "test_input", "test_output"):  # the committed files themselves
            committed = RESULTS / e.id / f"seed{e.seed}" / hub.KINDS[e.kind]
            assert sha256_file(committed) == e.sha256, e.file
    card = json.loads((RESULTS / "cnn3_k5" / "seed0" / "card.json").read_text())
    assert card["recipe_is_original"] and card["weights_sha256"] == next(
        e.sha256 for e in entries if e.key == ("cnn3_k5", 1, 0, "weights"))


def test_the_rebuild_reproduces_every_sha256_of_the_manifest(published: Path) -> None:
    expected = {e.key: e for e in hub.read_manifest(MANIFEST.read_text(), str(MANIFEST))}
    built = hub.load_manifest(published)
    assert {e.kind for e in built} >= {"onnx", "int8", "weights", "card", "test_input", "test_output"}
    for e in built:
        assert (expected[e.key].sha256, expected[e.key].size) == (e.sha256, e.size), e.file
        assert sha256_file(published / e.file) == e.sha256


@pytest.mark.slow
def test_the_rebuild_is_the_same_with_tensorflow_numerics_shifted(mnist_home: Path, tmp_path: Path) -> None:
    """oneDNN limited to AVX2 (and its custom ops off) changes TensorFlow's arithmetic, never a published byte."""
    env = {**os.environ, "MNISTZOO_HOME": str(mnist_home), "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    proc = subprocess.run([str(Path(sys.executable).with_name("mnistzoo")), "publish", str(tmp_path / "zoo"),
                           "mlp3_dropout_bn", "cnn3_k5", "--results", str(RESULTS), "--manifest", str(MANIFEST)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert len(hub.load_manifest(tmp_path / "zoo")) == 12


def test_a_file_that_differs_from_the_manifest_is_an_error(published: Path, tmp_path: Path, home: Path) -> None:
    doc = json.loads(MANIFEST.read_text())
    for row in doc["files"]:
        if row["id"] == "softmax_sgd" and row["kind"] == "onnx":
            row["sha256"] = "0" * 64
    wrong = tmp_path / "manifest.json"
    wrong.write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match=r"softmax_sgd/v1/seed0/model.onnx.*same toolchain.*--update"):
        rebuild(RESULTS, tmp_path / "zoo", ["softmax_sgd"], manifest=wrong)
    assert not (tmp_path / "zoo" / "manifest.json").exists()  # a zoo that failed its check lists nothing
    rebuild(RESULTS, tmp_path / "zoo", ["softmax_sgd"], manifest=wrong, update=True)
    assert hub.read_manifest(wrong.read_text(), "") == hub.read_manifest(MANIFEST.read_text(), "")  # repaired


def test_rebuild_checks_its_arguments_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="cnn7_k5_reg@1: no weights kept"):
        rebuild(RESULTS, tmp_path / "zoo", ["softmax_sgd", "cnn7_k5_reg"], manifest=MANIFEST)
    with pytest.raises(InvalidInput, match="unknown model"):
        rebuild(RESULTS, tmp_path / "zoo", ["resnet50"])
    with pytest.raises(InvalidInput, match="name it with --manifest"):
        rebuild(RESULTS, tmp_path / "zoo", update=True)
    with pytest.raises(NotFound, match="no such file; add --update"):
        rebuild(RESULTS, tmp_path / "zoo", ["softmax_sgd"], manifest=tmp_path / "missing.json")
    assert not (tmp_path / "zoo").exists()
    assert_one_line_error(run_cli("publish", str(tmp_path / "zoo"), "--manifest", str(MANIFEST)), 2, "--results")


def test_the_starter_pack_is_byte_for_byte_the_published_files() -> None:
    published = {e.key: e for e in hub.read_manifest(MANIFEST.read_text(), str(MANIFEST))}
    starter = hub.load_manifest(pretrained.STARTER)
    assert {e.kind for e in starter} == {"onnx", "card"}
    for e in starter:
        assert (published[e.key].sha256, published[e.key].size) == (e.sha256, e.size), e.file


def test_packages_split_by_study_and_purpose(published: Path) -> None:
    entries = hub.load_manifest(published)
    packs = groups(entries, {e.id: get_model_class(e.name).study for e in entries})
    assert set(packs) == {"mnistzoo-weights-init", "mnistzoo-weights-init-keras", "mnistzoo-weights-depth",
                          "mnistzoo-weights-depth-keras", "mnistzoo-weights-cnn", "mnistzoo-weights-cnn-keras"}
    assert all(e.kind in ("weights", "card") for name, pack in packs.items() if name.endswith("-keras") for e in pack)
    assert sum(len(p) for p in packs.values()) == len(entries) + 3  # each card in both of its model's packages


@pytest.mark.slow
def test_weights_wheels_install_offline_beside_the_plain_package(published: Path, tmp_path: Path) -> None:
    """Built twice, the wheels are the same bytes; installed with the plain mnistzoo wheel into a fresh virtual
    environment, every model loads without TensorFlow, matches its test vectors and scores its card, and a
    corrupted installed file is refused (scripts/check_light_install.py, which CI also runs for the plain install)."""
    first = build_wheels(published, tmp_path / "a", "0.1.0")
    second = build_wheels(published, tmp_path / "b", "0.1.0")
    assert [sha256_file(p) for p in first] == [sha256_file(p) for p in second]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_light_install.py"), "--weights",
                           str(tmp_path / "a")], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "weights wheels OK, 5 files loaded" in proc.stdout and "corrupted installed file is refused" in proc.stdout


def test_an_installed_package_is_found_and_verified(published: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process: a weights package's folder comes before the starter pack, and a truncated file is refused
    with one line naming it and the fix."""
    from mnistzoo import packages

    folder = tmp_path / "mnistzoo_weights_depth" / "zoo"
    shutil.copytree(published, folder)
    monkeypatch.setattr(packages, "installed", lambda: (("mnistzoo-weights-depth", folder),))
    packages._index.cache_clear()
    try:
        classifier = pretrained.load_pretrained("mlp3_dropout_bn", int8=True)
        assert classifier.source == "weights package" and classifier.path.name == "model.int8.onnx"
        assert pretrained.where("mlp3_dropout_bn") == "weights package"
        path = folder / "mlp3_dropout_bn" / "v1" / "seed0" / "model.onnx"
        path.write_bytes(path.read_bytes()[:1000])
        with pytest.raises(VerificationError, match=f"{path}.*reinstall the weights package"):
            pretrained.load_pretrained("mlp3_dropout_bn")
    finally:
        packages._index.cache_clear()


def test_the_readme_table_of_published_files_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "weights_table.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
