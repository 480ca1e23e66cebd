"""Parity of two models' probabilities on the same labelled images, telling a tie from a flip.

Two runtimes may each move a probability by up to ``atol``. Where the reference model's top-1
probability beats its runner-up by no more than ``2 * atol`` (the tie margin), float noise within
tolerance can swap them, so such a prediction is a **tie**: counted and reported, never a failure.
A **flip** is a prediction whose reference margin exceeds the tie margin and whose class the
other runtime still changes. The rule is the same in export, eval, the benchmarks and the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ATOL = 1e-5


def tie_margin(atol: float) -> float:
    """The top-1 minus runner-up margin at or below which a prediction is a tie: ``2 * atol``."""
    return 2 * atol


@dataclass(frozen=True)
class Parity:
    """How a model's probabilities compare with the reference's on the same images.

    ``agreement``: share of identical top-1 classes. ``ties``: reference predictions whose top two
    are within the tie margin (``tie_swaps`` of them changed class, harmlessly);
    ``max_tie_margin``: the largest such margin (None without ties). ``flipped``: changed classes
    outside the tie margin.
    """

    images: int
    agreement: float
    flipped: int
    ties: int
    tie_swaps: int
    max_tie_margin: float | None
    tie_margin: float
    max_abs_diff: float
    mean_abs_diff: float
    keras_accuracy: float
    onnx_accuracy: float
    accuracy_delta: float
    passed: bool


def compare(reference: np.ndarray, other: np.ndarray, labels: np.ndarray, *, atol: float = ATOL,
            max_flips: int = 0) -> Parity:
    """Parity figures of ``other`` (e.g. onnxruntime) against ``reference`` (e.g. Keras) probabilities."""
    ref, oth = reference.astype(np.float64), other.astype(np.float64)
    diff = np.abs(ref - oth)
    r_pred, o_pred = ref.argmax(1), oth.argmax(1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    tied = margin <= tie_margin(atol)
    changed = r_pred != o_pred
    flipped = int((changed & ~tied).sum())
    r_acc, o_acc = float((r_pred == labels).mean()), float((o_pred == labels).mean())
    return Parity(images=len(labels), agreement=1 - float(changed.mean()), flipped=flipped, ties=int(tied.sum()),
                  tie_swaps=int((changed & tied).sum()),
                  max_tie_margin=float(margin[tied].max()) if tied.any() else None, tie_margin=tie_margin(atol),
                  max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()), keras_accuracy=r_acc,
                  onnx_accuracy=o_acc, accuracy_delta=o_acc - r_acc,
                  passed=bool(diff.max() <= atol and flipped <= max_flips))
