"""What the ONNX specification says a file computes (``onnx.reference``), beside onnxruntime's answer.

Needs the ``onnx`` package but not TensorFlow, so an exported file can be checked on any machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contract import INPUT_NAME, OUTPUT_NAME
from .runtime import make_session, predict_onnx


def reference_max_diff(path: Path, images: np.ndarray) -> float:
    """Largest |onnxruntime - ONNX reference implementation| probability difference on ``images``.

    ``onnx.reference.ReferenceEvaluator`` computes what the specification says (int8 arithmetic included);
    an int8 file whose onnxruntime result strays from it (saturating kernels) would mean another thing
    on another CPU.
    """
    from onnx.reference import ReferenceEvaluator

    feed = {INPUT_NAME: images.astype(np.float32)}
    expected = ReferenceEvaluator(str(path)).run([OUTPUT_NAME], feed)[0]
    return float(np.abs(predict_onnx(make_session(path), images) - expected).max())
