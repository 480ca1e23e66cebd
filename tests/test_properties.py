"""Property tests: whole classes of bad input end in one clean error (``InvalidInput``/``ValueError``), never
anything else. Hypothesis draws the inputs."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnistzoo import _checks
from mnistzoo.errors import InvalidInput, MnistZooError
from mnistzoo.parity import compare, tie_margin
from mnistzoo.preparation import as_images
from mnistzoo.hub import read_manifest
from mnistzoo.records import EvalRecord, ExportRecord, OnnxCard, TrainCard, TrainState, read_history, read_record
from mnistzoo.zoo import get_model_class, list_models

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=5), max_leaves=12)


# ----------------------------------------------------------------------------- image inputs


@FAST
@given(hnp.arrays(dtype=hnp.scalar_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=30)))
def test_any_array_is_images_or_a_value_error(array: np.ndarray) -> None:
    try:
        images = as_images(array)
    except ValueError as exc:
        one_line(exc)
        return
    assert images.dtype == np.float32 and images.ndim == 3 and images.shape[1:] == (28, 28)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 255


@FAST
@given(st.binary(max_size=2000))
def test_any_file_bytes_are_a_picture_or_a_value_error(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    path = tmp_path_factory.mktemp("img") / "picture.png"
    path.write_bytes(blob)
    try:
        images = as_images(path)
    except ValueError as exc:
        one_line(exc)
        return
    assert images.shape == (1, 28, 28)


@FAST
@given(st.one_of(st.integers(), st.text(), st.floats(), st.none(), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(), st.integers(), max_size=2)))
def test_odd_python_objects_are_a_value_error(obj: object) -> None:
    with pytest.raises(ValueError) as info:
        as_images(obj)
    one_line(info.value)


# ----------------------------------------------------------------------------- names


@FAST
@given(st.text(max_size=30) | st.from_regex(r"[a-z0-9_]{1,12}@[\d\s+-]{0,8}", fullmatch=True))
def test_any_model_name_resolves_or_is_one_error(name: str) -> None:
    try:
        cls = get_model_class(name)
    except InvalidInput as exc:
        one_line(exc)
        return
    assert name in (cls.id, f"{cls.id}@{cls.version}")


@pytest.mark.parametrize("name", ["mlp2@١", "mlp2@", "@1", "", " mlp2", "mlp2 ", "mlp2@ 1", "mlp2@+1", "mlp2@01",
                                  "mlp2@1@1", "MLP2", "mlp2@" + "9" * 5000, "mlp2\n@1"])
def test_odd_name_forms(name: str) -> None:
    with pytest.raises(InvalidInput):
        get_model_class(name)


def test_the_api_validates_what_the_cli_does() -> None:
    with pytest.raises(InvalidInput, match="unknown study 'typo'"):
        list_models(study="typo")


# ----------------------------------------------------------------------------- records and manifests


RECORD_KINDS = (TrainState, TrainCard, OnnxCard, ExportRecord, EvalRecord)
RESULTS = Path(__file__).resolve().parent.parent / "results"


def _mutations(doc: dict) -> st.SearchStrategy:
    """A real record with one key dropped, retyped or added, or truncated to a prefix of its text."""
    keys = sorted(doc)
    return st.one_of(
        st.sampled_from(keys).map(lambda k: {kk: v for kk, v in doc.items() if kk != k}),
        st.tuples(st.sampled_from(keys), json_values).map(lambda kv: {**doc, kv[0]: kv[1]}),
        st.tuples(st.text(max_size=8), json_values).map(lambda kv: {**doc, kv[0]: kv[1]}),
        st.integers(0, len(json.dumps(doc))).map(lambda n: json.dumps(doc)[:n]))


@FAST
@given(kind=st.sampled_from(RECORD_KINDS), doc=json_values)
def test_any_json_record_is_valid_or_one_error(tmp_path_factory: pytest.TempPathFactory, kind: type,
                                               doc: object) -> None:
    path = tmp_path_factory.mktemp("rec") / "record.json"
    path.write_text(json.dumps(doc))
    try:
        record = read_record(path, kind, "rebuild it")
    except InvalidInput as exc:
        one_line(exc)
        assert str(path) in str(exc) and "rebuild it" in str(exc)
        return
    assert isinstance(record, dict) and record["schema"] == 1


@FAST
@given(data=st.data(), name=st.sampled_from(["card.json", "export.json", "eval.json", "history.json"]))
def test_damaged_real_records_are_valid_or_one_error(tmp_path_factory: pytest.TempPathFactory,
                                                     data: st.DataObject, name: str) -> None:
    real = json.loads((RESULTS / "mlp2" / "seed0" / name).read_text())
    damaged = data.draw(_mutations(real) if isinstance(real, dict) else st.just(real[:1] + [7]))
    path = tmp_path_factory.mktemp("rec") / name
    path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    kind = {"card.json": TrainCard, "export.json": ExportRecord, "eval.json": EvalRecord}.get(name)
    try:
        read_history(path, "rebuild it") if kind is None else read_record(path, kind, "rebuild it")
    except InvalidInput as exc:
        one_line(exc)


@FAST
@given(blob=st.binary(max_size=300))
def test_garbage_record_bytes_are_one_error(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    path = tmp_path_factory.mktemp("rec") / "state.json"
    path.write_bytes(blob)
    try:
        read_record(path, TrainState, "add --restart")
    except InvalidInput as exc:
        one_line(exc)


@FAST
@given(doc=json_values | st.fixed_dictionaries({"format": st.sampled_from(["mnistzoo-hub/1", "mnistzoo-hub/2"]),
                                               "files": json_values}))
def test_any_manifest_is_valid_or_one_error(doc: object) -> None:
    try:
        entries = read_manifest(json.dumps(doc), "hub/manifest.json")
    except MnistZooError as exc:
        one_line(exc)
        return
    assert all(".." not in e.file for e in entries)


@FAST
@given(text=st.text(max_size=200) | json_values.map(json.dumps))
def test_any_embedded_card_is_valid_or_one_error(text: str) -> None:
    from mnistzoo.runtime import parse_card

    try:
        card = parse_card(text, "model.onnx")
    except InvalidInput as exc:
        one_line(exc)
        return
    assert isinstance(card, dict) and len(card["class_names"]) == 10


# ----------------------------------------------------------------------------- numeric options


numbers = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(), st.booleans(), st.none())


@FAST
@given(numbers)
def test_numeric_checks_accept_only_what_they_name(value: object) -> None:
    for check, ok in ((lambda v: _checks.positive_int("--runs", v), lambda v: v is None or (
                          type(v) is int and v > 0)),
                      (lambda v: _checks.positive_float("--seconds", v), lambda v: v is None or (
                          type(v) in (int, float) and math.isfinite(v) and v > 0)),
                      (_checks.seed, lambda v: type(v) is int and 0 <= v <= 2**32 - 1)):
        try:
            check(value)
        except InvalidInput as exc:
            one_line(exc)
            assert not ok(value)
        else:
            assert ok(value)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: __import__("mnistzoo._checks", fromlist=["x"]).train_options("mlp2", seed=-1), "--seed"),
    (lambda: __import__("mnistzoo._checks", fromlist=["x"]).train_options("mlp2", seed=2**32), "--seed"),
    (lambda: __import__("mnistzoo._checks", fromlist=["x"]).train_options("mlp2", epochs=0), "--epochs"),
    (lambda: __import__("mnistzoo._checks", fromlist=["x"]).train_options("mlp2", limit=-3), "--limit"),
    (lambda: __import__("mnistzoo.export", fromlist=["x"]).export("mlp2", atol=float("nan")), "--atol"),
    (lambda: __import__("mnistzoo.export", fromlist=["x"]).export("mlp2", atol=-1.0), "--atol"),
    (lambda: __import__("mnistzoo.export", fromlist=["x"]).export("mlp2", max_flips=-1), "--max-flips"),
    (lambda: __import__("mnistzoo.export", fromlist=["x"]).export("mlp2", seed=2**40), "--seed"),
    (lambda: __import__("mnistzoo.evaluate", fromlist=["x"]).evaluate("m.onnx", seconds=float("inf")), "--seconds"),
    (lambda: __import__("mnistzoo.evaluate", fromlist=["x"]).evaluate("m.onnx", seconds=0.0), "--seconds"),
    (lambda: __import__("mnistzoo.evaluate", fromlist=["x"]).evaluate("m.onnx", runs=0), "--runs"),
    (lambda: __import__("mnistzoo.evaluate", fromlist=["x"]).evaluate("m.onnx", threads=-2), "--threads"),
    (lambda: __import__("mnistzoo.evaluate", fromlist=["x"]).evaluate("m.onnx", batch_sizes=[]), "--batch-sizes"),
    (lambda: __import__("mnistzoo.evaluate", fromlist=["x"]).evaluate("m.onnx", atol=float("nan")), "--atol"),
])
def test_api_functions_check_numbers_before_work(call, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()


# ----------------------------------------------------------------------------- parity


@FAST
@given(logits=hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.just(10)),
                         elements=st.floats(-30, 30)),
       noise=st.floats(0, 0.999e-5))
def test_noise_within_tolerance_never_flips(logits: np.ndarray, noise: float) -> None:
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    other = probs + noise * np.cos(np.arange(probs.size)).reshape(probs.shape)  # any perturbation <= atol
    parity = compare(probs, other, probs.argmax(1))
    assert parity.flipped == 0 and parity.passed
    assert parity.tie_swaps <= parity.ties


def test_a_real_flip_fails_and_a_tie_does_not() -> None:
    ref = np.array([[0.6, 0.4] + [0.0] * 8, [0.5 + 4e-6, 0.5 - 4e-6] + [0.0] * 8])
    other = ref[:, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]  # both rows swap their top two
    parity = compare(ref, other, np.array([0, 0]), atol=1.0)  # a loose atol: only the flip rule can fail
    assert (parity.flipped, parity.ties, parity.tie_swaps) == (0, 2, 2)  # margins 0.2 and 8e-6 <= 2.0
    parity = compare(ref, other, np.array([0, 0]), atol=1e-5)
    assert (parity.flipped, parity.ties, parity.tie_swaps) == (1, 1, 1) and not parity.passed
    assert parity.max_tie_margin == pytest.approx(8e-6) and parity.tie_margin == tie_margin(1e-5) == 2e-5


def test_a_png_declaring_huge_dimensions_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    big = tmp_path / "bomb.png"
    Image.new("L", (7000, 7000)).save(big)  # 49 M pixels, a few KB on disk
    with pytest.raises(ValueError, match="larger than the"):
        as_images(big)
    header = io.BytesIO()
    Image.new("L", (1, 1)).save(header, format="PNG")
    raw = bytearray(header.getvalue())
    raw[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR says 100000 x 100000; the data does not
    liar = tmp_path / "liar.png"
    liar.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as info:
        as_images(liar)
    one_line(info.value)
