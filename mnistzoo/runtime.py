"""onnxruntime in one place: sessions, the input contract, the embedded card, batched prediction, latency.

Only onnxruntime and numpy are needed: nothing here imports TensorFlow, Keras, tf2onnx or even
the ``onnx`` package, so a plain ``pip install mnistzoo`` runs exported files. Another runtime
(OpenVINO, say) would be one more session factory here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .contract import INPUT_NAME, OUTPUT_NAME
from .errors import InvalidInput, MnistZooError
from .records import OnnxCard, parse_record

CARD_KEY = "mnistzoo.card"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
OPTIMIZATIONS = {"extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,  # fusions, NCHW kept
                 "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}  # and the NCHWc layout for convolutions


@dataclass(frozen=True)
class SessionSettings:
    """How onnxruntime runs a file: intra-op threads (None: all cores), whether idle pool threads spin, the
    graph optimisation level (see :data:`OPTIMIZATIONS`), and how many images one call gets (None: the whole batch)."""

    threads: int | None = None
    spinning: bool = True
    optimization: str = "all"
    quantization_moves: bool = True  # onnxruntime may move QuantizeLinear above a MaxPool and absorb a Relu
    chunk: int | None = None  # a larger batch runs as calls of this many images, whose activations stay in cache


# onnxruntime's passes behind ``quantization_moves``: with a float32 convolution before the first
# QuantizeLinear they pull the quantization into its NCHWc layout and leave a slow uint8 MaxPool there.
QUANTIZATION_MOVES = ("QDQPropagationTransformer", "ReluQuantFusion")

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


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message cut to one line, for a one-line error."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def parse_card(text: str | None, origin: str = "the ONNX file") -> OnnxCard | None:
    """The mnistzoo card from an ONNX file's ``mnistzoo.card`` metadata (None: a foreign file); garbled is an error."""
    if text is None:
        return None
    fix = "re-export it with `mnistzoo export`"
    try:
        doc = json.loads(text)
    except ValueError:
        raise InvalidInput(f"{origin}: its embedded '{CARD_KEY}' metadata is not JSON; {fix}") from None
    card = parse_record(doc, OnnxCard, f"{origin}: its embedded card", fix)
    if len(card["class_names"]) != 10:
        raise InvalidInput(f"{origin}: its embedded card lists {len(card['class_names'])} class names, not 10; {fix}")
    return card


def make_session(model: Any, provider: str = "cpu", threads: int | None = None,
                 origin: Path | str | None = None, settings: SessionSettings | None = None,
                 profile: str | None = None) -> ort.InferenceSession:
    """The one onnxruntime session factory: explicit provider, optimisation level, threads and spinning.

    ``model``: a path, serialized bytes, or an ``onnx.ModelProto``; ``origin`` names it in errors;
    ``settings`` (default: all cores, spinning, every optimisation) takes ``threads`` from ``threads`` if unset;
    ``profile``: a file prefix for onnxruntime's profiler (its JSON is written by ``session.end_profiling()``).
    """
    settings = settings or SessionSettings()
    threads = settings.threads or threads
    if provider not in PROVIDERS:
        raise InvalidInput(f"unknown provider {provider!r}; choose cpu or cuda")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        raise InvalidInput(f"--threads must be a positive integer, got {threads!r}")
    if provider == "cuda" and PROVIDERS["cuda"] not in ort.get_available_providers():
        raise MnistZooError("CUDA was asked for but this onnxruntime has no CUDAExecutionProvider (no GPU, or "
                            "onnxruntime-gpu not installed); use --provider cpu")
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATIONS[settings.optimization]
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors raise; its warnings (unused initializers of a quantized file) are noise
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, profile
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    try:
        session = ort.InferenceSession(str(source) if isinstance(source, Path) else source, options,
                                       providers=[PROVIDERS[provider]],
                                       disabled_optimizers=[] if settings.quantization_moves else
                                       list(QUANTIZATION_MOVES))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own load errors (corrupt file, IR version, operator)
        where = origin or (source if isinstance(source, Path) else "the model")
        raise InvalidInput(f"{where}: not a valid ONNX model that onnxruntime {ort.__version__} can load, "
                           f"the file is corrupt, truncated, of another format or too new ({first_line(exc)}); "
                           "re-export it with `mnistzoo export`, or upgrade onnxruntime") from None
    session.mnistzoo_settings = replace(settings, threads=options.intra_op_num_threads)
    return session


def _describe(arg: Any) -> str:
    dims = ",".join("?" if d is None else str(d) for d in arg.shape)
    return f"'{arg.name}' {arg.type} [{dims}]"


def _check_contract(path: Path, sess: ort.InferenceSession) -> None:
    def ok(args: list, name: str, rest: list[int]) -> bool:
        return (len(args) == 1 and args[0].name == name and args[0].type == "tensor(float)"
                and len(args[0].shape) == 1 + len(rest) and not isinstance(args[0].shape[0], int)
                and list(args[0].shape[1:]) == rest)

    if not ok(sess.get_inputs(), INPUT_NAME, [28, 28]):
        raise InvalidInput(f"{path}: wrong input contract: expected one input '{INPUT_NAME}' float32 [batch,28,28], "
                           f"found {', '.join(_describe(i) for i in sess.get_inputs()) or 'none'}")
    if not ok(sess.get_outputs(), OUTPUT_NAME, [10]):
        raise InvalidInput(f"{path}: wrong output contract: expected one output '{OUTPUT_NAME}' float32 "
                           f"[batch,10], found {', '.join(_describe(o) for o in sess.get_outputs()) or 'none'}")


@dataclass
class OnnxModel:
    """An exported file opened in onnxruntime, its contract checked, with its card (None if foreign)."""

    path: Path
    session: ort.InferenceSession
    card: OnnxCard | None

    def predict(self, images: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Probabilities of ``images`` (N,28,28) raw pixels, float32 (N,10)."""
        return predict_onnx(self.session, images, batch)


def open_model(path: Path, provider: str = "cpu", threads: int | None = None) -> OnnxModel:
    """Open an ONNX file in onnxruntime and check the zoo's contract and its embedded card."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory; give the path of an .onnx file inside it")
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file; give the path of an .onnx file (see `mnistzoo export`)")
    sess = make_session(path, provider, threads, origin=path)
    _check_contract(path, sess)
    return OnnxModel(path, sess, parse_card(sess.get_modelmeta().custom_metadata_map.get(CARD_KEY), str(path)))


def infer(sess: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    """Probabilities of one float32 ``batch`` (N,28,28), in calls of the session's ``chunk`` images."""
    chunk = sess.mnistzoo_settings.chunk or len(batch)
    if len(batch) <= chunk:
        return sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: batch[i:i + chunk]})[0]
                           for i in range(0, len(batch), chunk)])


def predict_onnx(sess: ort.InferenceSession, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Probabilities of ``images`` (N,28,28), in batches."""
    return np.concatenate([infer(sess, images[i:i + batch].astype(np.float32)) for i in range(0, len(images), batch)])


# ----------------------------------------------------------------------------- latency


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
