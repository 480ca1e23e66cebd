"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import time

from mnistzoo import _tf  # noqa: F401 - quiet TensorFlow start-up

import tensorflow as tf  # noqa: E402


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """This CPU's float32 ceiling as TensorFlow reaches it: the best of several large matmuls."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()
    best = min(_timed(lambda: tf.linalg.matmul(a, b).numpy()) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
