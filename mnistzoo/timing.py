"""Timing onnxruntime sessions: latency percentiles, interleaved throughput, and tuning each batch size to its
fastest settings (threads, spinning, optimisation level, images per call). What measures lives here; what runs a
file is :mod:`mnistzoo.runtime`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import onnxruntime as ort

from .runtime import OPTIMIZATIONS, SessionSettings, infer, make_session


# Chunk sizes :func:`tune` tries below a batch size. Measured on the 2-core EPYC: the 2.6 M-MAC CNNs' first
# convolution writes 86 KB of float32 activations an image, 22 MB at batch 256, more than the caches hold; in calls of
# 32-64 images they stay in cache. Both files save about the same time, a larger share of int8's: the four
# 2.6 M-MAC CNNs' int8 files ran 9-22 % faster, their float32 files 0-6 %.
CHUNKS = (128, 64, 32, 16)


def candidate_settings(threads: int | None = None, quantized: bool = False) -> list[SessionSettings]:
    """What :func:`tune` tries: one thread and all cores (or only ``threads``), spinning on and off where a pool
    exists, each optimisation level, and for a quantized file with and without :data:`QUANTIZATION_MOVES`."""
    counts = [threads] if threads is not None else sorted({1, os.cpu_count() or 1})
    return [SessionSettings(n, spin, level, moves) for n in counts for spin in ((True,) if n == 1 else (True, False))
            for level in OPTIMIZATIONS for moves in ((True, False) if quantized else (True,))]


@dataclass(frozen=True)
class Latency:
    batch_size: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    provider: str
    threads: int
    runs: int
    spinning: bool | None = None  # onnxruntime's settings (None for Keras)
    optimization: str | None = None
    quantization_moves: bool | None = None
    chunk: int | None = None
    tuned: bool = False  # the settings were the fastest :func:`tune` found at this batch size


def percentiles(times: list[float], batch: int, provider: str, threads: int, **settings: Any) -> Latency:
    """Latency figures of per-call wall times (seconds) of one batch size."""
    ms = np.array(times) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Latency(batch, float(p50), float(p90), float(p99), batch * len(ms) / (ms.sum() / 1e3),
                   provider, threads, len(ms), **settings)


def time_runs(fn: Callable[[], object], runs: int, warmup: int, seconds: float | None) -> list[float]:
    """Per-call wall times of ``fn`` after ``warmup`` calls: ``runs`` calls, or as many as fit in ``seconds``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs if seconds is None else time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def batch_of(images: np.ndarray, batch: int) -> np.ndarray:
    """The first ``batch`` images (cycled if fewer), contiguous float32."""
    return np.ascontiguousarray(images[np.arange(batch) % len(images)], dtype=np.float32)


def _settings_of(sess: ort.InferenceSession) -> dict:
    """The settings :func:`make_session` gave ``sess``."""
    return asdict(sess.mnistzoo_settings)


# onnxruntime's idle pool threads spin after a run: measured on the 2-core EPYC, a 2-thread session kept one core
# busy for 60 ms after its last call. Timing another session before they park times it on fewer cores.
SPIN_SETTLE_S = 0.1


def settle(after: ort.InferenceSession | None = None) -> None:
    """Wait until the spinning pool threads of a session that just ran are parked (no wait if ``after`` has none)."""
    if after is None or (after.mnistzoo_settings.spinning and after.mnistzoo_settings.threads > 1):
        time.sleep(SPIN_SETTLE_S)


def onnx_latency(sess: ort.InferenceSession | dict[int, ort.InferenceSession], images: np.ndarray,
                 batch_sizes: list[int], *, runs: int = 200, warmup: int = 20, seconds: float | None = None,
                 tuned: bool = False) -> list[Latency]:
    """onnxruntime latency per batch size after a warm-up, with one session or one per batch size (tuned)."""
    rows = []
    for batch in batch_sizes:
        session = sess[batch] if isinstance(sess, dict) else sess
        feed = batch_of(images, batch)
        settle()
        rows.append(percentiles(time_runs(lambda: infer(session, feed), runs, warmup, seconds),
                                batch, session.get_providers()[0], **_settings_of(session), tuned=tuned))
    return rows


def interleaved_throughput(sessions: dict[str, ort.InferenceSession], images: np.ndarray, batch: int, *,
                           rounds: int = 5, seconds: float = 0.4) -> dict[str, list[float]]:
    """Images/s of each session at ``batch`` in each of ``rounds`` rounds, the sessions taking turns for
    ``seconds`` each: compare them within a round (:func:`median_ratio`), as this machine's speed drifts between
    rounds."""
    ips: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            ips[name].append(onnx_latency(session, images, [batch], seconds=seconds)[0].images_per_s)
    return ips


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of one round's ``numerator`` over the same round's ``denominator``."""
    return float(np.median(np.array(numerator) / np.array(denominator)))


def tune(model: Any, images: np.ndarray, batch_sizes: list[int], *, provider: str = "cpu",
         threads: int | None = None, quantized: bool = False, rounds: int = 15, seconds: float = 0.02,
         budget: float = 2.0, margin: float = 0.05) -> dict[int, ort.InferenceSession]:
    """The fastest session of :func:`candidate_settings` for each batch size, then the fastest of its
    :data:`CHUNKS` below that batch size.

    Candidates take turns in up to ``rounds`` short slices (at least 3; more while the batch size's ``budget``
    seconds last). Each is judged by the median over rounds of its time over the first candidate's time in the same
    round, as this machine's speed drifts between rounds; the first (the defaults: all cores or ``threads``,
    spinning, every optimisation; then the whole batch in one call) stays unless another is faster by more than
    ``margin``, so noise does not pick one. A slice starts once the previous candidate's spinning threads have parked
    (:func:`settle`) and times at least 3 calls after one untimed call (the first finds cold caches and a sleeping
    pool).
    """
    candidates = candidate_settings(threads, quantized)
    default = SessionSettings(threads=max(c.threads for c in candidates))
    sessions = [make_session(model, provider, settings=s) for s in [default, *(c for c in candidates if c != default)]]
    fastest = {}
    for batch in batch_sizes:
        feed = batch_of(images, batch)
        best = _fastest(sessions, feed, rounds, seconds, budget, margin)
        chunked = [make_session(model, provider, settings=replace(best.mnistzoo_settings, chunk=c))
                   for c in CHUNKS if c < batch]
        fastest[batch] = _fastest([best, *chunked], feed, rounds, seconds, budget, margin) if chunked else best
    return fastest


def _fastest(sessions: list[ort.InferenceSession], feed: np.ndarray, rounds: int, seconds: float, budget: float,
             margin: float) -> ort.InferenceSession:
    """The first of ``sessions`` unless another runs ``feed`` faster by more than ``margin`` (see :func:`tune`)."""
    for session in sessions:
        infer(session, feed)
    per_round: list[list[float]] = []
    started = time.perf_counter()
    while len(per_round) < max(rounds, 3) and (len(per_round) < 3 or time.perf_counter() - started < budget):
        per_round.append([_slice(lambda s=s: infer(s, feed), seconds, settle_first=before)
                          for before, s in zip([sessions[-1], *sessions], sessions)])
    ratios = np.median(np.array(per_round) / np.array(per_round)[:, [0]], axis=0)
    best = int(np.argmin(ratios))
    return sessions[best if ratios[best] < 1 - margin else 0]


def _slice(fn: Callable[[], object], seconds: float, settle_first: ort.InferenceSession) -> float:
    """The median time of ``fn`` over ``seconds`` or 3 calls, whichever is more, after one untimed call, once the
    session ``settle_first`` that ran before has parked its threads."""
    settle(settle_first)
    times = time_runs(fn, 1, 1, seconds)
    if len(times) < 3:
        times += time_runs(fn, 3 - len(times), 0, None)
    return float(np.median(times))
