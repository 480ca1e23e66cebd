"""``load_pretrained``, the shipped starter pack, hubs (publish/pull, file:// and HTTP), ``mnistzoo predict``."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line_error, run_cli
from homes import using_home
from mnistzoo import MnistZooError, VerificationError, data, load_pretrained
from mnistzoo import hub as hub_module
from mnistzoo import pretrained
from mnistzoo.errors import NotFound
from mnistzoo.publish import publish_runs
from mnistzoo._io import sha256_file
from mnistzoo.parity import ATOL, tie_margin

STARTER_IDS = ("mlp3_dropout_bn", "cnn3_k5", "fashion_mlp2", "softmax_sgd")
RUN_KINDS = ("onnx", "weights", "card", "test_input", "test_output")  # a run exported without int8


@pytest.fixture(scope="session")
def datasets_home(mnist_home: Path) -> Path:
    """The shared zoo home, now also holding Fashion-MNIST (offline route in CI)."""
    with using_home(mnist_home):
        data.load("fashion_mnist")
    return mnist_home


@pytest.fixture(scope="session")
def zoo_runs(runs: Path, mnist_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the small trained CNN run, exported in place (as `mnistzoo export` does in a zoo home)."""
    from mnistzoo.export import export

    out = tmp_path_factory.mktemp("zoo_runs")
    shutil.copytree(runs / "cnn3_k3@1", out / "cnn3_k3@1")
    with using_home(mnist_home):
        export("cnn3_k3", runs=out)
    return out


@pytest.fixture(scope="session")
def digits(mnist_home: Path) -> tuple[np.ndarray, np.ndarray]:
    """Eight real test digits and their labels."""
    with using_home(mnist_home):
        ds = data.load("mnist")
    return ds.x_test[:8], ds.y_test[:8]


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """A static file server on 127.0.0.1 for ``directory``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


# ----------------------------------------------------------------------------- the starter pack


def test_starter_pack_files_match_their_manifest_and_fit_in_5_mb() -> None:
    entries = hub_module.load_manifest(pretrained.STARTER)
    assert {(e.id, e.kind) for e in entries} == {(i, k) for i in STARTER_IDS for k in ("onnx", "card")}
    for e in entries:
        path = pretrained.STARTER / e.file
        assert path.stat().st_size == e.size and sha256_file(path) == e.sha256, e.file
    assert sum(e.size for e in entries) <= 5_000_000
    for model_id in STARTER_IDS:
        card = json.loads((pretrained.STARTER / model_id / "v1" / "seed0" / "card.json").read_text())
        assert card["recipe_is_original"] and card["epochs_run"] == card["recipe"]["epochs"]


@pytest.mark.parametrize("model_id", STARTER_IDS)
def test_starter_files_infer_every_shape_with_a_symbolic_batch(model_id: str) -> None:
    import onnx

    from mnistzoo.graph import check_static_shapes

    proto = onnx.load(pretrained.STARTER / model_id / "v1" / "seed0" / "model.onnx")
    check_static_shapes(proto)  # a runtime that propagates shapes statically loads it with any batch
    assert not proto.graph.value_info and "Shape" not in {n.op_type for n in proto.graph.node}


@pytest.mark.parametrize("model_id", STARTER_IDS)
def test_starter_model_loads_offline_and_scores_its_card(model_id: str, datasets_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = load_pretrained(model_id)  # this test's zoo home is empty and no hub is set
    assert classifier.source == "starter pack" and classifier.card["name"] == f"{model_id}@1"
    card = json.loads((pretrained.STARTER / model_id / "v1" / "seed0" / "card.json").read_text())
    monkeypatch.setenv("MNISTZOO_HOME", str(datasets_home))
    ds = data.load(card["dataset"]["name"])
    probs = classifier.predict_proba(ds.x_test)
    accuracy = float((probs.argmax(1) == ds.y_test).mean())
    top2 = np.sort(probs, axis=1)[:, -2:]
    ties = int((top2[:, 1] - top2[:, 0] <= tie_margin(ATOL)).sum())  # another CPU's rounding may swap these
    assert abs(accuracy - card["results"]["test_accuracy"]) <= (ties + 0.5) / len(ds.y_test)
    assert classifier.class_names == list(ds.class_names)


def test_a_tampered_starter_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "starter"
    shutil.copytree(pretrained.STARTER, copy)
    _flip_byte(copy / "softmax_sgd" / "v1" / "seed0" / "model.onnx")
    monkeypatch.setattr(pretrained, "STARTER", copy)
    with pytest.raises(VerificationError, match="SHA-256 does not match its manifest"):
        load_pretrained("softmax_sgd")


def test_missing_everywhere_names_the_commands_that_make_it() -> None:
    with pytest.raises(NotFound, match=r"`make weights`.*`pip install mnistzoo-weights-cnn`.*`mnistzoo build "
                                        r"cnn7_k5_reg`"):
        load_pretrained("cnn7_k5_reg")
    with pytest.raises(NotFound, match=r"`mnistzoo build cnn3_k5 --seeds 2`"):
        load_pretrained("cnn3_k5", seed=2)
    with pytest.raises(MnistZooError, match="unknown backend"):
        load_pretrained("mlp3_dropout_bn", backend="torch")
    with pytest.raises(MnistZooError, match="unknown model"):
        load_pretrained("resnet50")


# ----------------------------------------------------------------------------- zoo home and hubs


def test_the_zoo_home_comes_first_and_is_verified(zoo_runs: Path, zoo_home: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(zoo_runs / "cnn3_k3@1", zoo_home / "runs" / "cnn3_k3@1")
    with caplog.at_level("WARNING", logger="mnistzoo.pretrained"):
        classifier = load_pretrained("cnn3_k3")
    assert "not trained with its full recipe" in caplog.text
    assert classifier.source == "zoo home"
    assert load_pretrained("cnn3_k3", backend="keras").name.startswith("cnn3_k3")
    _flip_byte(zoo_home / "runs" / "cnn3_k3@1" / "seed0" / "model.onnx")
    with pytest.raises(VerificationError, match="re-export"):
        load_pretrained("cnn3_k3")


def test_hub_round_trip_by_file_url(zoo_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    digits: tuple[np.ndarray, np.ndarray]) -> None:
    hub = tmp_path / "hub"
    entries = publish_runs(hub, runs=zoo_runs)
    assert {(e.id, e.kind) for e in entries} == {("cnn3_k3", k) for k in RUN_KINDS}
    monkeypatch.setenv("MNISTZOO_HUB", hub.as_uri())
    classifier = load_pretrained("cnn3_k3")
    assert classifier.source == "hub" and classifier.path.is_relative_to(hub_module.cache_dir())
    expected = pretrained.Classifier(zoo_runs / "cnn3_k3@1" / "seed0" / "model.onnx").predict_proba(digits[0])
    np.testing.assert_array_equal(classifier.predict_proba(digits[0]), expected)

    _flip_byte(classifier.path)  # the cached copy is checked again at every load
    with pytest.raises(VerificationError, match="refusing to load"):
        load_pretrained("cnn3_k3")


def test_hub_round_trip_over_http_with_the_cli(zoo_runs: Path, tmp_path: Path, zoo_home: Path,
                                               digits: tuple[np.ndarray, np.ndarray]) -> None:
    hub = tmp_path / "hub"
    proc = run_cli("publish", str(hub), "cnn3_k3", "--runs", str(zoo_runs))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((hub / "manifest.json").read_text())
    assert manifest["format"] == "mnistzoo-hub/2" and len(manifest["files"]) == len(RUN_KINDS)
    with serving(hub) as url:
        proc = run_cli("pull", "cnn3_k3", "--hub", url)
        assert proc.returncode == 0, proc.stderr
        _flip_byte(hub / "cnn3_k3" / "v1" / "seed0" / "model.weights.h5")
        shutil.rmtree(zoo_home / "hub")
        assert_one_line_error(run_cli("pull", "cnn3_k3", "--hub", url), 1, "does not match its manifest")
        assert not (zoo_home / "hub" / "cnn3_k3" / "v1" / "seed0" / "model.weights.h5").exists()
        assert_one_line_error(run_cli("pull", "mlp2", "--hub", url), 2, "has no mlp2@1")
    assert_one_line_error(run_cli("pull", "cnn3_k3", "--hub", url), 2, "unreachable")
    assert_one_line_error(run_cli("pull", "cnn3_k3"), 2, "MNISTZOO_HUB")


def test_publish_needs_an_export(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no exported models"):
        publish_runs(tmp_path / "hub", runs=tmp_path / "nothing")
    with pytest.raises(NotFound, match="mnistzoo export cnn3_k3"):
        publish_runs(tmp_path / "hub", ["cnn3_k3"], runs=runs)
    assert not (tmp_path / "hub").exists()  # nothing is copied before every name is checked


def test_a_manifest_cannot_point_outside_its_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "mnistzoo-hub/1", "files": [
        {"id": "cnn3_k3", "version": 1, "kind": "onnx", "file": "../../etc/passwd", "sha256": "0" * 64, "size": 1}]}))
    monkeypatch.setenv("MNISTZOO_HUB", str(tmp_path))
    with pytest.raises(MnistZooError, match="relative paths inside the hub"):
        load_pretrained("cnn3_k3")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(MnistZooError, match="not a valid mnistzoo hub manifest"):
        load_pretrained("cnn3_k3")


# ----------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def classifier() -> pretrained.Classifier:
    return pretrained.Classifier(pretrained.STARTER / "mlp3_dropout_bn" / "v1" / "seed0" / "model.onnx", "starter pack")


def test_every_array_form_gives_the_same_prediction(classifier: pretrained.Classifier,
                                                    digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    expected = classifier.predict_proba(x)
    assert expected.shape == (8, 10) and (expected.argmax(1) == y).all()
    for form in (x.astype(np.float32), x.astype(np.float64), x.reshape(8, 784), x[..., None], list(x)):
        np.testing.assert_allclose(classifier.predict_proba(form), expected, atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(x[3]), expected[3:4], atol=1e-6)
    np.testing.assert_array_equal(classifier.predict(255 - x, invert=True), y)


def test_pictures_paths_and_pil_images(classifier: pretrained.Classifier, digits: tuple[np.ndarray, np.ndarray],
                                       tmp_path: Path) -> None:
    x, y = digits
    paths = []
    for i, image in enumerate(x):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    np.testing.assert_allclose(classifier.predict_proba(paths), classifier.predict_proba(x), atol=1e-6)
    assert classifier.predict(str(paths[0]))[0] == y[0]
    Image.fromarray(255 - x[1]).convert("RGB").resize((112, 112)).save(tmp_path / "paper.jpg", quality=95)
    assert classifier.predict(tmp_path / "paper.jpg", invert=True)[0] == y[1]
    assert classifier.predict(Image.fromarray(x[2]).resize((56, 56)))[0] == y[2]


@pytest.mark.parametrize(("bad", "message"), [
    (np.zeros((3, 32, 32), np.uint8), r"expected shape \(28,28\).*got \(3, 32, 32\)"),
    (np.zeros((2, 28, 28), np.int64), "expected uint8 or float pixels 0-255, got dtype int64"),
    (np.full((28, 28), np.nan, np.float32), "NaN or infinity"),
    (np.full((28, 28), 300.0), "found 300 to 300"),
    (np.full((28, 28), -1.0), "in 0-255, found -1"),
    (np.zeros((0, 28, 28), np.uint8), "at least one image"),
    ("no_such_file.png", "no such file"),
])
def test_bad_inputs_raise_value_errors(classifier: pretrained.Classifier, bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classifier.predict(bad)


def test_a_file_that_is_not_a_picture(classifier: pretrained.Classifier, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ValueError, match="not a readable PNG or JPEG"):
        classifier.predict(tmp_path / "notes.png")


# ----------------------------------------------------------------------------- mnistzoo predict


def test_predict_cli(digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, y = digits
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(x[i]).save(paths[-1])
    proc = run_cli("predict", "mlp3_dropout_bn", *paths, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["label"] for r in rows] == [int(v) for v in y[:3]]
    for row in rows:
        probs = [t["probability"] for t in row["top3"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and row["top3"][0]["label"] == row["label"]
    proc = run_cli("predict", "mlp3_dropout_bn", paths[0])
    assert proc.returncode == 0 and "starter pack" in proc.stdout and paths[0] in proc.stdout
    assert_one_line_error(run_cli("predict", "mlp3_dropout_bn", str(tmp_path / "gone.png")), 2, "no such file")
    assert_one_line_error(run_cli("predict", "cnn7_k5_reg", paths[0]), 2, "mnistzoo build cnn7_k5_reg")
