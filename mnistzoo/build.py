"""Zoo builds: every (model, seed) is a job that trains with the full recipe, exports (verified, with int8)
and evaluates, run one after another in this process (``engine="local"``) or as Ray tasks (``engine="ray"``).

Jobs write into the runs directory (``<runs>/<id>@<v>/seed<k>/``, see :mod:`mnistzoo.runs`). A job
whose run is finished, exported and evaluated is skipped; an unfinished one resumes from its last
complete epoch. One failed job never stops the others. On Ray each job is a generator task; a worker
process runs one job after another, as the local engine does (Ray's default; one job per worker where
the job takes GPUs, so their memory is freed), with TensorFlow's thread pools set to the job's CPUs; it
works in a temporary directory on its node and streams its events to the driver: its resumable state
after every epoch (a retried or rerun job resumes from it) and its files when done; the driver writes
them into its own runs directory, so no shared filesystem is needed. With ``results``, each finished
run's records are copied to ``<results>/<id>/seed<k>/`` with a ``summary.json`` over seeds, and each unfinished run's
resumable state to ``<results>/<id>/seed<k>/partial/`` after every epoch (commit it to carry a
long build across machines; a build restores from it).

TensorFlow is imported only where a job runs: a Ray driver never imports it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import output_dir, positive_int
from ._checks import seed as check_seed
from ._extras import require_extra
from ._io import atomic_path
from .contract import CONVERSION_ROUTE
from .errors import InvalidInput, MnistZooError
from .records import SCHEMA, SeedSummary, TrainCard, dump_record, read_record, write_record
from .runs import (CARD, CHECKPOINT, CURVES, EVAL, EXPORT, HISTORY, KERNELS, ONNX, PUBLISHED_SEED, STATE, TEST_INPUT,
                   TEST_OUTPUT, WEIGHTS, Run, run_dir, seed_dir_name, trained_settings)
from .runtime import first_line
from .zoo import get_model, list_models

ENGINES = ("local", "ray")
MAX_RETRIES = 2  # a job whose worker process dies is run again this many times
PARTIAL, PARTIAL_FILES = "partial", (CHECKPOINT, STATE)  # the checkpoint first: state is the commit
RESULT_RECORDS = (CARD, HISTORY, CURVES, EXPORT, EVAL, KERNELS)
PUBLISHED_FILES = (WEIGHTS, TEST_INPUT, TEST_OUTPUT)  # results/ keeps these of PUBLISHED_SEED's run too
EVAL_BATCH_SIZES = [1, 256]
_SEEDS = re.compile(r"(\d{1,10})(?:-(\d{1,10}))?")

Event = Callable[["Job", str, dict], None]




@dataclass(frozen=True)
class Job:
    """One (model, seed) to train, export and evaluate; ``epochs``/``limit`` shorten it (not the full recipe);
    ``timed`` measures int8 speed and latency on this machine (off: the records say nothing of speed)."""

    name: str  # id@version
    seed: int
    epochs: int | None = None
    limit: int | None = None
    timed: bool = True

    @property
    def key(self) -> str:
        return f"{self.name}/{seed_dir_name(self.seed)}"

    @property
    def id(self) -> str:
        return self.name.split("@")[0]


@dataclass
class Outcome:
    """How a job ended: ``done`` (ran now), ``skipped`` (finished before) or ``failed`` (with its one-line error)."""

    job: Job
    state: str
    seconds: float = 0.0
    test_accuracy: float | None = None
    error: str | None = None
    attempts: int = 1


@dataclass
class BuildPlan:
    jobs: list[Job]
    engine: str = "local"
    address: str | None = None
    cpus_per_job: int | None = None
    gpus_per_job: float = 0.0
    runs: Path | None = None
    results: Path | None = None


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"``, ``"0-4"`` or a mix such as ``"0-2,7"`` -> ascending distinct seeds."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        match = _SEEDS.fullmatch(part) if part.isascii() else None
        if match is None or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise InvalidInput(f"--seeds takes seeds like 0,1,2 or a range like 0-4; got {text!r}")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last - first >= 1000:
            raise InvalidInput(f"--seeds {text!r} asks for {last - first + 1} seeds; give at most 1000")
        seeds += [check_seed(s) for s in range(first, last + 1)]
    return sorted(set(seeds))


def plan(ids: Iterable[str] = (), *, study: str | None = None, all_models: bool = False, seeds: Iterable[int] = (0,),
         epochs: int | None = None, limit: int | None = None, engine: str = "local", address: str | None = None,
         cpus_per_job: int | None = None, gpus_per_job: float = 0.0, runs: Path | None = None,
         results: Path | None = None, timed: bool = True) -> BuildPlan:
    """Check every option and name, and list the jobs (model-major, seeds ascending); no work starts here."""
    if engine not in ENGINES:
        raise InvalidInput(f"unknown --engine {engine!r}; choose local or ray")
    if address is not None and engine != "ray":
        raise InvalidInput("--address joins a Ray cluster; add --engine ray")
    positive_int("--epochs", epochs)
    positive_int("--limit", limit)
    positive_int("--cpus-per-job", cpus_per_job)
    if isinstance(gpus_per_job, bool) or not isinstance(gpus_per_job, (int, float)) or not 0 <= gpus_per_job <= 64:
        raise InvalidInput(f"--gpus-per-job must be a number from 0 to 64 (a fraction shares a GPU), got {gpus_per_job!r}")
    if gpus_per_job and engine != "ray":
        raise InvalidInput("--gpus-per-job schedules Ray tasks; add --engine ray (the local engine uses what "
                           "TensorFlow finds)")
    seeds = sorted({check_seed(s) for s in seeds})
    if not seeds:
        raise InvalidInput("--seeds names no seed; give e.g. 0,1,2 or 0-4")
    names = [get_model(i).name for i in ids]
    if study is not None or all_models:
        names += [get_model(i).name for i in list_models(study=study)]
    if not names:
        raise InvalidInput("name the models to build (IDs), or use --study S or --all")
    for path, option in ((runs, "--runs"), (results, "--results")):
        if path is not None:
            output_dir(Path(path), option)
    if engine == "ray":
        require_extra("ray", "--engine ray")
        if address not in (None, "auto"):
            _probe(address)
    if not isinstance(timed, bool):
        raise InvalidInput(f"timed must be True or False, got {timed!r}")
    jobs = [Job(name, s, epochs, limit, timed) for name in dict.fromkeys(names) for s in seeds]
    return BuildPlan(jobs, engine, address, cpus_per_job, float(gpus_per_job), runs, results)


# ----------------------------------------------------------------------------- one job


def _finished_in(run: Run, job: Job) -> bool:
    """``run`` (a run directory, or a run's records under ``--results``) holds ``job`` trained with its settings,
    exported with passing parity and evaluated, and for :data:`PUBLISHED_SEED` its weights file: nothing left to
    do."""
    try:
        card = run.card()
    except InvalidInput:
        return False
    return (trained_settings(card) == _settings(job) and run.export_current(card, CONVERSION_ROUTE, job.timed)
            and run.evaluated(job.timed) and (job.seed != PUBLISHED_SEED or run.weights_kept(card)))


def _settings(job: Job) -> dict:
    """The settings ``job`` trains with, as :func:`runs.trained_settings` reads them from a card."""
    recipe = get_model(job.name).spec.recipe
    return {**asdict(recipe), "epochs": job.epochs or recipe.epochs, "seed": job.seed, "limit": job.limit,
            "precision": "float32"}


def run_job(job: Job, runs: Path | None = None, on_epoch: Callable[[dict], None] | None = None) -> TrainCard:
    """Train (or resume) ``job``'s run, keep its weights, export it with int8 unless a passing export of those
    weights exists, evaluate it."""
    from .checkpoints import keep_weights
    from .evaluate import evaluate
    from .export import export
    from .train import train

    result = train(job.name, epochs=job.epochs, limit=job.limit, seed=job.seed, out=runs, on_epoch=on_epoch)
    run = Run(result.run_dir)
    result.card = keep_weights(run.path)  # a run trained before weights were kept gets its weights file now
    if not run.export_current(result.card, CONVERSION_ROUTE, job.timed):
        export(job.name, runs=runs, seed=job.seed, quantize="int8", measure_speed=job.timed)
        (run / EVAL).unlink(missing_ok=True)
    if not run.evaluated(job.timed):
        _evaluate_run(run.path, job, evaluate)
    return result.card


def _evaluate_run(run: Path, job: Job, evaluate: Callable[..., dict]) -> None:
    """``eval.json`` (accuracy, parity, latency; paths relative to the runs directory) and ``kernels.png``."""
    from .report import plot_kernels

    from .keras_runtime import load_keras

    record = evaluate(run / ONNX, batch_sizes=EVAL_BATCH_SIZES, keras_path=run / WEIGHTS, timed=job.timed)
    record["path"] = f"{job.key}/{ONNX}"
    record["parity"]["checkpoint"] = f"{job.key}/{WEIGHTS}"
    plot_kernels(load_keras(run / WEIGHTS, job.name), f"{job.name} seed {job.seed}: hidden-layer kernels",
                 run / KERNELS)
    write_record(run / EVAL, record)


# ----------------------------------------------------------------------------- results/


def restore_partial(job: Job, runs: Path | None, results: Path) -> bool:
    """Seed an empty run directory from ``<results>/<id>/seed<k>/partial/``; whether it did."""
    source, run = results / job.id / seed_dir_name(job.seed) / PARTIAL, run_dir(job.name, job.seed, runs)
    if not (source / STATE).is_file() or (run / STATE).exists() or (run / CARD).exists():
        return False
    for name in PARTIAL_FILES:
        _put(run / name, (source / name).read_bytes())
    return True


def save_partial(job: Job, runs: Path | None, results: Path) -> None:
    """Copy an unfinished run's checkpoint and state to ``<results>/<id>/seed<k>/partial/``."""
    run, dest = run_dir(job.name, job.seed, runs), results / job.id / seed_dir_name(job.seed) / PARTIAL
    if (run / STATE).is_file() and (run / CHECKPOINT).is_file():
        for name in PARTIAL_FILES:
            _put(dest / name, (run / name).read_bytes())


def collect(job: Job, runs: Path | None, results: Path) -> Path:
    """Copy a finished job's records to ``<results>/<id>/seed<k>/`` (dropping its partial state), resummarise."""
    run, dest = run_dir(job.name, job.seed, runs), results / job.id / seed_dir_name(job.seed)
    for name in RESULT_RECORDS + (PUBLISHED_FILES if job.seed == PUBLISHED_SEED else ()):
        if (run / name).exists():
            _put(dest / name, (run / name).read_bytes())
    shutil.rmtree(dest / PARTIAL, ignore_errors=True)
    write_summary(results / job.id)
    return dest


def _put(path: Path, blob: bytes) -> None:
    """Write ``blob`` atomically unless ``path`` holds it already (a rerun changes no file)."""
    if not (path.is_file() and path.read_bytes() == blob):
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)


def _stats(values: list[float]) -> dict:
    array = np.array(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else None,
            "min": float(array.min()), "max": float(array.max())}


def write_summary(model_dir: Path) -> SeedSummary | None:
    """``summary.json`` over the full-recipe runs in ``model_dir/seed*/`` (sample std, ddof=1); None if there are none."""
    cards = [c for path in sorted(model_dir.glob("seed*/card.json"))
             if (c := read_record(path, TrainCard, "rebuild it with `mnistzoo build`"))["recipe_is_original"]]
    if not cards:
        (model_dir / "summary.json").unlink(missing_ok=True)
        return None
    cards.sort(key=lambda c: c["seed"])
    summary: SeedSummary = {
        "schema": SCHEMA, "id": cards[0]["id"], "name": cards[0]["name"], "seeds": [c["seed"] for c in cards],
        "n": len(cards), **{key: {**_stats([c["results"][key] for c in cards]),
                                  "values": [c["results"][key] for c in cards]}
                            for key in ("test_accuracy", "test_loss")}}  # type: ignore[typeddict-item]
    _put(model_dir / "summary.json", dump_record(summary).encode())
    return summary


# ----------------------------------------------------------------------------- engines


def build(build_plan: BuildPlan, on_event: Event | None = None) -> list[Outcome]:
    """Run every job of ``build_plan`` not finished yet; one outcome per job, in plan order."""
    report = on_event or (lambda job, kind, details: None)
    runs, results = build_plan.runs, build_plan.results
    outcomes: dict[Job, Outcome] = {}
    todo = []
    for job in build_plan.jobs:
        run = run_dir(job.name, job.seed, runs)
        # Finished here, or on another machine whose records are in results/ (a fresh clone has no runs directory).
        places = [Run(run)] + ([Run(results / job.id / seed_dir_name(job.seed))] if results is not None else [])
        kept = [place for place in places if _finished_in(place, job)]
        if kept:
            outcomes[job] = Outcome(job, "skipped", test_accuracy=kept[0].card()["results"]["test_accuracy"])
            if results is not None and kept[0].path == run:
                collect(job, runs, results)
            report(job, "done", {"skipped": True})
        else:
            if results is not None:
                restore_partial(job, runs, results)
            todo.append(job)
    if todo:
        engine = _run_local if build_plan.engine == "local" else _run_ray
        for outcome in engine(todo, build_plan, report):
            outcomes[outcome.job] = outcome
            if outcome.state == "done" and results is not None:
                collect(outcome.job, runs, results)
    return [outcomes[job] for job in build_plan.jobs]


def _failure(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, MnistZooError) else first_line(exc)


def thread_variables(threads: int) -> dict[str, str]:
    """The environment that sizes TensorFlow's (and oneDNN's) thread pools to ``threads``."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}


def set_threads(threads: int) -> None:
    """TensorFlow's (and oneDNN's) thread pools for a job given ``threads`` CPUs, as TensorFlow would size them on
    a machine of that many cores; before TensorFlow starts. (A single inter-op thread stalled whole epochs.)"""
    os.environ.update(thread_variables(threads))
    from . import _tf  # noqa: F401 - TensorFlow started quietly, after the variables above

    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started in this process: its pools stay as they are
        pass


def _run_local(jobs: list[Job], build_plan: BuildPlan, report: Event) -> Iterable[Outcome]:
    if build_plan.cpus_per_job:
        set_threads(build_plan.cpus_per_job)
    for job in jobs:
        report(job, "start", {"pid": os.getpid()})
        started = time.perf_counter()

        def on_epoch(row: dict, job: Job = job) -> None:
            if build_plan.results is not None:
                save_partial(job, build_plan.runs, build_plan.results)
            report(job, "epoch", row)

        try:
            card = run_job(job, build_plan.runs, on_epoch)
        except Exception as exc:  # noqa: BLE001 - one job's failure, whatever it is, never stops the others
            outcome = Outcome(job, "failed", time.perf_counter() - started, error=_failure(exc))
        else:
            outcome = Outcome(job, "done", time.perf_counter() - started, card["results"]["test_accuracy"])
        report(job, outcome.state, {"error": outcome.error, "seconds": outcome.seconds})
        yield outcome


# ----------------------------------------------------------------------------- Ray


def _ray_job(job: Job, files: dict[str, bytes], threads: int) -> Iterator[tuple[str, dict]]:
    """A Ray generator task: run ``job`` in a temporary runs directory on this node, from ``files`` (its latest
    resumable state, if any). It yields ``("start", ...)``, then ``("epoch", row)`` with the run's resumable state
    after each epoch, and last ``("done", {"files": ...})`` with all the run's files.

    Training runs in a thread beside the generator, which passes its events on as they come. Yielding never waits
    on the driver; a task blocked in ``ray.get`` would lend its CPUs to the next job, which would run beside it.
    """
    import queue
    import socket
    import tempfile
    import threading

    yield "start", {"pid": os.getpid(), "node": socket.gethostname()}
    set_threads(threads)
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    with tempfile.TemporaryDirectory(prefix="mnistzoo-job-") as tmp:
        runs = Path(tmp)
        run = run_dir(job.name, job.seed, runs)
        run.mkdir(parents=True)
        for name, blob in files.items():
            (run / name).write_bytes(blob)
        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        def on_epoch(row: dict) -> None:
            events.put(("epoch", {**row, "files": {name: (run / name).read_bytes() for name in PARTIAL_FILES}}))

        def work() -> None:
            try:
                run_job(job, runs, on_epoch)
            except BaseException as exc:  # noqa: BLE001 - raised again in the task, where Ray reports it
                events.put(("error", exc))
            else:
                events.put(("finished", None))

        threading.Thread(target=work, name="mnistzoo-job", daemon=True).start()
        while (event := events.get())[0] == "epoch":
            yield event
        if event[0] == "error":
            raise event[1]
        yield "done", {"files": {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
                                 if p.is_file()}}


def _write_files(run: Path, files: dict[str, bytes]) -> None:
    """Write a job's files into its run directory, each atomically, ``card.json`` (the commit point) last."""
    for name in sorted(files, key=lambda n: n == CARD):
        _put(run / name, files[name])
    if CARD in files:
        for name in PARTIAL_FILES:
            (run / name).unlink(missing_ok=True)


def connect_ray(address: str | None, log_to_driver: bool = False) -> bool:
    """Join the cluster at ``address``, or start an embedded local instance; whether this call started Ray."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    if address is None:  # an embedded instance runs jobs at the priority the local engine does (Ray's default: 15)
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=log_to_driver,
                 configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise MnistZooError(f"cannot connect to {where} ({first_line(exc)}); start one with `ray start --head` "
                            "and pass its address, or leave out --address for an embedded local instance") from None
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail in one line, within ``timeout``, when nothing listens at a ``[ray://]HOST:PORT`` address (Ray would retry
    for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInput(f"--address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise MnistZooError(f"cannot reach a Ray cluster at {address!r} ({type(exc).__name__}: {exc}); check the "
                            "address `ray start --head` printed, or leave out --address for a local instance") from None


def _run_ray(jobs: list[Job], build_plan: BuildPlan, report: Event) -> Iterable[Outcome]:
    import ray

    started_here = connect_ray(build_plan.address)
    try:
        yield from _ray_loop(jobs, build_plan, report, ray)
    finally:
        if started_here:
            ray.shutdown()


def _ray_loop(jobs: list[Job], build_plan: BuildPlan, report: Event, ray: Any) -> Iterable[Outcome]:
    cpus = build_plan.cpus_per_job or 1
    # Retries are the driver's (MAX_RETRIES): Ray's own would rerun a task with the files of its first try. Ray reuses
    # a worker only for tasks of the same runtime environment: a worker whose TensorFlow started with other pools
    # (an earlier build of this driver) never runs these jobs.
    task = ray.remote(_ray_job).options(num_cpus=cpus, num_gpus=build_plan.gpus_per_job, max_retries=0,
                                        runtime_env={"env_vars": thread_variables(cpus)})
    pending: dict[Any, Job] = {}  # a running task's generator of events -> its job
    started = {job: time.perf_counter() for job in jobs}
    attempts = {job: 0 for job in jobs}

    def submit(job: Job) -> None:
        """Run ``job`` from what the driver has of it: a rerun or a retry resumes from its latest epoch."""
        run = run_dir(job.name, job.seed, build_plan.runs)
        files = ({name: (run / name).read_bytes() for name in PARTIAL_FILES}
                 if all((run / name).is_file() for name in PARTIAL_FILES) else {})
        attempts[job] += 1
        pending[task.remote(job, files, cpus)] = job

    for job in jobs:
        submit(job)
    while pending:
        [events], _ = ray.wait(list(pending), num_returns=1)
        job = pending[events]
        run = run_dir(job.name, job.seed, build_plan.runs)
        try:
            kind, details = ray.get(next(events))
        except ray.exceptions.RayTaskError as exc:
            outcome = Outcome(job, "failed", time.perf_counter() - started[job], error=_failure(exc.cause or exc),
                              attempts=attempts[job])
        except ray.exceptions.RayError as exc:  # its worker died: run it again from its latest epoch
            del pending[events]
            if attempts[job] <= MAX_RETRIES:
                submit(job)
                continue
            outcome = Outcome(job, "failed", time.perf_counter() - started[job], error=f"its worker died "
                              f"{attempts[job]} times ({first_line(exc, 120)})", attempts=attempts[job])
        else:
            if kind != "done":
                if kind == "start":  # a job's seconds count from its worker's start, not from its wait in the queue
                    started[job] = time.perf_counter()
                elif kind == "epoch":
                    _write_files(run, details.pop("files"))
                    if build_plan.results is not None:
                        save_partial(job, build_plan.runs, build_plan.results)
                report(job, kind, details)
                continue
            _write_files(run, details["files"])
            card = Run(run).card()
            outcome = Outcome(job, "done", time.perf_counter() - started[job], card["results"]["test_accuracy"],
                              attempts=attempts[job])
        pending.pop(events, None)
        report(job, outcome.state, {"error": outcome.error, "seconds": outcome.seconds})
        yield outcome
