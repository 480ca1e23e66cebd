"""MNIST-style preparation of people's pictures: what it does, what it leaves alone, and that it reads better."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from cli_helpers import run_cli
from mnistzoo import data, load_pretrained
from mnistzoo.own_digits import make_set
from mnistzoo.preparation import as_images, prepare


@pytest.fixture(scope="module")
def mnist(mnist_home) -> data.Dataset:  # noqa: ANN001
    from homes import using_home

    with using_home(mnist_home):
        return data.load("mnist")


def on_paper(digit: np.ndarray, size: tuple[int, int], at: tuple[int, int], scale: int, dark_on_light: bool,
             noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """An MNIST digit scaled up and placed on a larger sheet, in either polarity."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC), float)
    sheet = np.zeros(size)
    sheet[at[0]:at[0] + big.shape[0], at[1]:at[1] + big.shape[1]] = big
    sheet += np.random.default_rng(seed).normal(0, noise, size)
    sheet = np.clip(sheet, 0, 255)
    return 255 - sheet if dark_on_light else sheet


def test_the_same_digit_reads_the_same_wherever_and_however_it_is_drawn(mnist: data.Dataset) -> None:
    digit = mnist.x_test[0]
    ways = [on_paper(digit, (300, 400), (10, 20), 5, True), on_paper(digit, (300, 400), (150, 250), 5, False),
            on_paper(digit, (500, 220), (300, 40), 6, True, noise=6.0), on_paper(digit, (90, 90), (2, 50), 1, True)]
    prepared = [prepare(w) for w in ways]
    for p in prepared:
        assert p.shape == (28, 28) and p.dtype == np.float32 and 0 <= p.min() and p.max() <= 255
        assert np.abs(p - prepared[0]).mean() < 12  # placement, polarity, scale and noise barely matter
        rows, cols = np.nonzero(p > 20)
        assert max(np.ptp(rows), np.ptp(cols)) in range(17, 22)  # fitted to the 20x20 box
        cy, cx = (np.array(np.nonzero(p)) * p[np.nonzero(p)]).sum(1) / p.sum()
        assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centred by mass
    with pytest.raises(ValueError, match="blank"):  # forced to the wrong polarity, dark ink is no ink at all
        prepare(ways[0], invert=False)


def test_scan_edges_and_ruled_lines_clear_of_the_digit_are_ignored(mnist: data.Dataset) -> None:
    clean = on_paper(mnist.x_test[0], (400, 500), (80, 120), 5, True)
    scanned = clean.copy()
    scanned[5:7, :], scanned[380:382, :], scanned[:, :6] = 120, 120, 40  # lines, and the scanner's dark edge
    assert np.abs(prepare(scanned) - prepare(clean)).mean() < 2  # the same digit, the ink level a little apart


def test_dataset_form_passes_unchanged_unless_asked(mnist: data.Dataset) -> None:
    x = mnist.x_test[:20]
    np.testing.assert_array_equal(as_images(x), x.astype(np.float32))
    pictures = [Image.fromarray(i) for i in x]
    np.testing.assert_array_equal(as_images(pictures), x.astype(np.float32))
    assert not np.array_equal(as_images(pictures, prepare="mnist"), x.astype(np.float32))
    with pytest.raises(ValueError, match="prepare='crop'"):
        as_images(x, prepare="crop")


@pytest.mark.parametrize("picture", [np.full((60, 80), 230.0), np.full((60, 80), 10.0),
                                     np.random.default_rng(0).normal(200, 5, (120, 90)).clip(0, 255)])
def test_a_blank_picture_is_a_clear_error(picture: np.ndarray) -> None:
    with pytest.raises(ValueError, match="blank"):
        prepare(picture)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=120),
                  elements=st.floats(0, 255)))
def test_any_grey_picture_is_prepared_or_called_blank(picture: np.ndarray) -> None:
    try:
        p = prepare(picture)
    except ValueError as exc:
        assert "blank" in str(exc) and "\n" not in str(exc)
        return
    assert p.shape == (28, 28) and np.isfinite(p).all() and p.min() >= 0 and p.max() <= 255.001


def test_pictures_not_in_mnist_form_read_far_better(mnist: data.Dataset) -> None:
    own = make_set(mnist.x_test, mnist.y_test, 80, seed=1)
    labels = np.array([d.label for d in own])
    for model in ("mlp3_dropout_bn", "cnn3_k5"):
        clf = load_pretrained(model)
        plain = np.mean([clf.predict(d.picture, prepare="resize", invert=d.dark_on_light)[0] == d.label for d in own])
        ours = (clf.predict([d.picture for d in own]) == labels).mean()
        assert ours >= 0.8 and ours >= plain + 0.4, (model, plain, ours)


def test_predict_shows_what_the_model_saw(mnist: data.Dataset, tmp_path) -> None:  # noqa: ANN001
    sheet = on_paper(mnist.x_test[0], (200, 300), (40, 60), 4, True)
    Image.fromarray(sheet.astype(np.uint8)).save(tmp_path / "scan.png")
    Image.fromarray(sheet.astype(np.uint8)).save(tmp_path / "scan.jpg", quality=60)
    proc = run_cli("predict", "cnn3_k5", str(tmp_path / "scan.png"), str(tmp_path / "scan.jpg"), "--json",
                   "--show-input", str(tmp_path / "seen.png"))
    assert proc.returncode == 0, proc.stderr
    import json

    assert [r["label"] for r in json.loads(proc.stdout)] == [int(mnist.y_test[0])] * 2
    shown = Image.open(tmp_path / "seen.png")
    assert shown.size == (2 * 30 * 4, 28 * 4)
