"""Train a zoo model with its recipe: atomic per-epoch checkpoints, exact resume, history, curves and a card.

A run lives in ``<out>/<id>@<version>/seed<k>/`` (see :mod:`mnistzoo.runs`). While training it holds ``checkpoint.keras`` (weights
and optimiser state) and ``state.json`` (the config and the history so far), both replaced
atomically at every epoch end, ``state.json`` last: it is the commit point. Each epoch's data
order and dropout randomness derive from (seed, epoch) alone, so a resumed run repeats exactly
what an uninterrupted one would have done. A finished run holds ``model.keras``, ``model.weights.h5``
(weights only: what results/ keeps and every published file is rebuilt from), ``history.json``,
``curves.png`` and ``card.json``.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import _tf  # noqa: F401 - quiet TensorFlow start-up
from . import data
from ._checks import output_dir, train_options
from ._env import environment
from ._io import ensure_writable_dir, sha256_file
from ._plot import pyplot, save_png
from .errors import InvalidInput, MnistZooError
from .checkpoints import save_weights
from .records import SCHEMA, TrainCard, TrainState, read_history, read_record, write_record
from .runs import CARD, CHECKPOINT, CURVES, DEFAULT_SEED, HISTORY, KERAS, STATE, WEIGHTS, run_dir, trained_settings
from .zoo import ZooModel
from .zoo.specs import Recipe

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

EVAL_BATCH = 1024
EpochReport = Callable[[dict], None]
StepReport = Callable[[str, int, int, dict], None]  # ("epoch/epochs", step, steps per epoch, running logs)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's result."""

    model: str
    recipe: Recipe
    seed: int
    limit: int | None
    precision: str


@dataclass
class TrainResult:
    """A finished run: its directory, card and per-epoch history (``skipped``: it was finished before)."""

    run_dir: Path
    card: TrainCard
    history: list[dict]
    resumed_from_epoch: int
    skipped: bool = False


def _differences(asked: dict, found: dict) -> str:
    """``epochs 2 (it has 15), seed 1 (it has 0)``: the settings that differ between two configs."""
    keys = sorted(k for k in asked.keys() | found.keys() if asked.get(k) != found.get(k))
    return ", ".join(f"{k.replace('_', '-')} {asked.get(k)} (it has {found.get(k)})" for k in keys)


def _flat(config: TrainConfig) -> dict:
    """A config as the flat settings a user chooses: the recipe's fields, seed, limit, precision."""
    return {**asdict(config.recipe), "seed": config.seed, "limit": config.limit, "precision": config.precision}


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Restore Python's and numpy's global random states and TensorFlow's op determinism after the block.

    TensorFlow's global seed cannot be read back: it stays set to the run's seed.
    """
    from tensorflow.python.framework import config as tf_config  # the public API cannot read the flag back

    py_state, np_state = random.getstate(), np.random.get_state()
    deterministic = tf_config.is_op_determinism_enabled()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if not deterministic:
            tf_config.disable_op_determinism()


def _splits(recipe: Recipe, limit: int | None) -> tuple[np.ndarray, ...]:
    """Training and validation arrays as the recipe says; ``limit`` keeps the first N training images."""
    ds = data.load(recipe.dataset)
    x, y = ds.x_train, ds.y_train
    if recipe.validation == "split":
        n_val = recipe.validation_images
        x, y, x_val, y_val = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    else:
        x_val, y_val = ds.x_test, ds.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y, x_val, y_val, ds


class _Batches:
    """Batches of a uint8 image array in a given order, as float32 pixels and one-hot labels.

    The arrays become tensors once; each epoch's dataset only slices its index order into
    batches and gathers them in the graph. Feeding uint8 moves a quarter of the bytes of the
    notebooks' float32 arrays, whole batches are gathered at once instead of one image at a
    time, and the batches of the next graph call are prepared while the current one runs.
    The pipeline is sized by hand, without tf.data's autotuner: started afresh with each
    epoch's dataset, it made some epochs last exactly 2.56 s or 5.12 s longer (its optimisation
    period doubles from 10 ms); by hand, epochs are steady and no slower.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.images, self.labels, self.size = tf.constant(x), tf.constant(y.astype(np.int32)), len(x)

    def __call__(self, batch_size: int, order: np.ndarray | None = None) -> tf.data.Dataset:
        order = np.arange(self.size) if order is None else order
        options = tf.data.Options()
        options.autotune.enabled = False
        return (tf.data.Dataset.from_tensor_slices(order.astype(np.int32)).batch(batch_size)
                .map(self._take).prefetch(2 * _steps_per_execution(batch_size)).with_options(options))

    def _take(self, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(self.images, index), tf.float32), tf.one_hot(tf.gather(self.labels, index), 10)


def _steps_per_execution(batch_size: int) -> int:
    """Run several small steps per graph call, so tiny batches are not dominated by Python overhead."""
    return max(1, 512 // batch_size)


class _StepCallback(keras.callbacks.Callback):
    def __init__(self, report: StepReport, epoch: str, steps: int) -> None:
        super().__init__()
        self.report, self.epoch, self.steps = report, epoch, steps

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.report(self.epoch, min(batch + 1, self.steps), self.steps, dict(logs or {}))


def _optimizer(recipe: Recipe) -> keras.optimizers.Optimizer:
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=recipe.learning_rate)
    return keras.optimizers.Adam(learning_rate=recipe.learning_rate)


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    """Layers built in the block compute in ``name`` (variables stay float32 under a mixed policy)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _float32_model(model: keras.Model, zoo_model: ZooModel, recipe: Recipe) -> keras.Model:
    """The float32 model users get from a mixed-precision run: same architecture, the trained weights."""
    plain = zoo_model.build()
    plain.set_weights(model.get_weights())
    plain.compile(optimizer=_optimizer(recipe), loss=recipe.loss, metrics=["accuracy"])
    return plain


def _reseed_dropout(model: keras.Model, seed: int, epoch: int) -> None:
    """Set every layer's random state from (seed, epoch): checkpoints do not hold it."""
    for i, layer in enumerate(model.layers):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            generator.state.assign(np.array([seed * 1_000_003 + epoch * 1_009 + i, 0], dtype="int64"))


def _plot_curves(history: list[dict], title: str, path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = pyplot().subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((ax_loss, "loss", "Categorical Crossentropy Loss"), (ax_acc, "accuracy", "Accuracy")):
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "b", label=f"Validation {key.title()}")
        ax.plot(epochs, [h[key] for h in history], "r", label=f"Train {key.title()}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def _save_model(model: keras.Model, path: Path) -> None:
    """Save beside ``path`` and rename onto it: a failed save leaves the previous file intact."""
    tmp = path.with_name(f".{path.stem}.partial.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise MnistZooError(f"cannot write {path} ({exc.strerror or exc}); free disk space and rerun "
                            "the same command to resume from the last complete epoch") from None
    finally:
        tmp.unlink(missing_ok=True)


def train(model_id: str, *, epochs: int | None = None, batch_size: int | None = None, seed: int = DEFAULT_SEED,
          limit: int | None = None, out: Path | None = None, restart: bool = False, force: bool = False,
          precision: str = "float32", on_epoch: EpochReport | None = None,
          on_step: StepReport | None = None) -> TrainResult:
    """Train ``model_id`` with its recipe (or the overrides given); resume a killed run where it stopped.

    ``precision="mixed_bfloat16"`` computes in bfloat16 with float32 weights (faster on CPUs with
    AVX512-BF16 or AMX); the saved ``model.keras`` is float32 either way. A finished run is returned
    as it is only when asked for the same settings (else an error, or ``force=True`` retrains). Python's
    and numpy's global random states and TensorFlow's op determinism are restored afterwards;
    TensorFlow's global seed is left at ``seed``.
    """
    zoo_model = train_options(model_id, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit,
                              precision=precision)
    spec = zoo_model.spec
    recipe = replace(spec.recipe, epochs=epochs or spec.recipe.epochs, batch_size=batch_size or spec.recipe.batch_size)
    config = TrainConfig(zoo_model.name, recipe, seed, limit, precision)
    if out is not None:
        output_dir(Path(out), "--out")
    run = ensure_writable_dir(run_dir(zoo_model.name, seed, out), "output directory")
    card_path, state_path, ckpt_path = run / CARD, run / STATE, run / CHECKPOINT

    if card_path.exists() and not force:
        fix = f"retrain with `mnistzoo train {zoo_model.id} --force`"
        card = read_record(card_path, TrainCard, fix)
        done = trained_settings(card)
        if done != _flat(config):
            raise InvalidInput(f"{run} already holds a finished run with other settings: asked for "
                               f"{_differences(_flat(config), done)}; add --force to retrain it with these, or "
                               "--out DIR to keep both")
        return TrainResult(run, card, read_history(run / HISTORY, fix), card["epochs_run"],
                           skipped=True)
    if restart or force:
        for path in (card_path, state_path, ckpt_path):
            path.unlink(missing_ok=True)
    with _process_state_kept():
        return _train(zoo_model, config, run, on_epoch, on_step)


def _train(zoo_model: ZooModel, config: TrainConfig, run: Path, on_epoch: EpochReport | None,
           on_step: StepReport | None) -> TrainResult:
    """Train (or resume) the run in ``run`` to the end and write its card."""
    spec, recipe, seed, limit, precision = zoo_model.spec, config.recipe, config.seed, config.limit, config.precision
    card_path, state_path, ckpt_path = run / CARD, run / STATE, run / CHECKPOINT
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    history: list[dict] = []
    if state_path.exists():
        state = read_record(state_path, TrainState, "add --restart to discard the partial run")
        try:
            found = _flat(TrainConfig(state["config"]["model"], Recipe(**state["config"]["recipe"]),
                                      state["config"]["seed"], state["config"]["limit"],
                                      state["config"]["precision"]))
        except (KeyError, TypeError):
            raise InvalidInput(f"{state_path}: its config is missing or mistyped fields; add --restart to discard "
                               "the partial run") from None
        if found != _flat(config):
            raise InvalidInput(f"{run} holds a partial run with other settings: asked for "
                               f"{_differences(_flat(config), found)}; rerun with its settings to resume, or add "
                               "--restart to discard it")
        if not ckpt_path.is_file():
            raise InvalidInput(f"{ckpt_path}: missing beside its state.json; restore it to resume, or add --restart "
                               "to discard the partial run")
        try:
            if sha256_file(ckpt_path) != state["checkpoint_sha256"]:
                raise ValueError("checkpoint hash differs from state.json")
            model = keras.models.load_model(ckpt_path)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
            raise InvalidInput(f"{ckpt_path}: corrupt checkpoint ({type(exc).__name__}); "
                               "add --restart to discard the partial run") from None
        history = state["history"]
    x, y, x_val, y_val, ds = _splits(recipe, limit)
    train_batches, validation = _Batches(x, y), _Batches(x_val, y_val)(EVAL_BATCH)
    steps = -(-len(x) // recipe.batch_size)

    if not history:
        with _dtype_policy(precision):
            model = zoo_model.build()
        model.compile(optimizer=_optimizer(recipe), loss=recipe.loss, metrics=["accuracy"],
                      steps_per_execution=_steps_per_execution(recipe.batch_size))
    resumed_from = len(history)

    started = time.perf_counter()
    for epoch in range(resumed_from, recipe.epochs):
        _reseed_dropout(model, seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        t0 = time.perf_counter()
        callbacks = [_StepCallback(on_step, f"{epoch + 1}/{recipe.epochs}", steps)] if on_step else []
        logs = model.fit(train_batches(recipe.batch_size, order), epochs=1, validation_data=validation,
                         shuffle=False, callbacks=callbacks, verbose=0).history
        row = {"epoch": epoch + 1, **{k: float(v[-1]) for k, v in logs.items()}, "seconds": time.perf_counter() - t0}
        history.append(row)
        _save_model(model, ckpt_path)
        write_record(state_path, TrainState(schema=SCHEMA, config=asdict(config), history=history,
                                            checkpoint_sha256=sha256_file(ckpt_path)))
        if on_epoch:
            on_epoch(row)
    wall = time.perf_counter() - started

    mixed = precision != "float32"
    if mixed:
        model = _float32_model(model, zoo_model, recipe)
    test_loss, test_acc = model.evaluate(_Batches(ds.x_test, ds.y_test)(EVAL_BATCH), verbose=0)
    _save_model(model, run / KERAS)
    weights_sha256 = save_weights(model, zoo_model.name, run / WEIGHTS)
    write_record(run / HISTORY, history)
    _plot_curves(history, f"{zoo_model.name}: {recipe.dataset}, {recipe.optimizer}, batch {recipe.batch_size}",
                 run / CURVES)
    ref = asdict(spec.reference)
    epochs, batch_size = (None if recipe.epochs == spec.recipe.epochs else recipe.epochs,
                          None if recipe.batch_size == spec.recipe.batch_size else recipe.batch_size)
    ours = {"test_accuracy": test_acc, "test_loss": test_loss, "train_accuracy": history[-1]["accuracy"]}
    trained_epochs = len(history) - resumed_from
    card: TrainCard = {
        "schema": SCHEMA, "id": zoo_model.id, "name": zoo_model.name, "version": zoo_model.version,
        "study": zoo_model.study,
        "recipe": asdict(recipe), "precision": precision,
        "recipe_is_original": recipe == spec.recipe and limit is None and not mixed,
        "overrides": {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("limit", limit),
                                        ("precision", precision if mixed else None)) if v},
        "seed": seed, "train_images": len(x), "epochs_run": len(history),
        "validation_note": ("validated on the test set, as the notebook did; the last epoch's weights are kept, "
                            "the test set selects nothing" if recipe.validation == "test" else
                            f"validated on the last {recipe.validation_images} training images"),
        "dataset": {"name": ds.name, "source": ds.source, "sha256": ds.hashes()},
        "results": ours, "reference": ref,
        "delta": {k: (ours[k] - ref[k]) if ref[k] is not None else None for k in ours},
        "wall_seconds": sum(h["seconds"] for h in history),
        "images_per_second": (len(x) * trained_epochs / wall) if trained_epochs else None,
        "model_sha256": sha256_file(run / KERAS),
        "environment": environment(),
        "weights_sha256": weights_sha256,
    }
    write_record(card_path, card)
    ckpt_path.unlink(missing_ok=True)
    state_path.unlink(missing_ok=True)
    return TrainResult(run, card, history, resumed_from)


class _CallableModule(types.ModuleType):
    """Lets ``mnistzoo.train(id, ...)`` call :func:`train` while ``mnistzoo.train`` stays this module."""

    def __call__(self, *args, **kwargs) -> TrainResult:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
