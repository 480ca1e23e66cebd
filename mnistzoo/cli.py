"""The ``mnistzoo`` command: a thin typer layer over the Python API."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID,
                           TextColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from ._checks import output_dir, output_file
from .errors import BuildError, InvalidInput, MnistZooError, literal

app = typer.Typer(help="A model zoo of classic MNIST and Fashion-MNIST networks.",
                  epilog="Environment: MNISTZOO_HOME (datasets, runs and the hub cache; default ~/.cache/mnistzoo), "
                         "MNISTZOO_DATASETS_URL (base URL of the canonical dataset files), "
                         "MNISTZOO_HUB (a hub directory or URL that `pull` and `load_pretrained` read).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch, verify and inspect the datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
StudyOption = Annotated[Optional[str], typer.Option(help="Only this study: depth, cnn, activations, fashion, init.")]
PIPE_WIDTH = 160  # tables written to a pipe or log are not cut at 80 columns
# Markup is off: every name, path and message is printed literally; colour comes from Text styles.
console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH, markup=False, highlight=False)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH, markup=False, highlight=False)
_interrupt_note = "nothing was written"  # what Ctrl-C keeps; commands that keep more say so


def _ok(text: str) -> Text:
    return Text.assemble(("✓ ", "green"), text)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"mnistzoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """A model zoo of classic MNIST and Fashion-MNIST networks."""


def _names(name: str) -> tuple[str, ...]:
    from . import data

    return data.DATASETS if name == "all" else (data.get_spec(name).name,)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="mnist, fashion_mnist or all.")] = "all",
    from_path: Annotated[Optional[Path], typer.Option(
        "--from", help="Read from this directory of IDX files (.gz or raw), Keras-layout .npz or mnist.pkl.gz "
                       "instead of the network sources.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if a verified copy is cached.")] = False,
) -> None:
    """Fetch datasets into the cache, trusting only content that matches the catalogue's SHA-256."""
    from . import data

    names = _names(name)
    if from_path is not None and len(names) != 1:
        raise MnistZooError("--from needs one dataset name (mnist or fashion_mnist), not 'all'")
    columns = (SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        for n in names:
            task = progress.add_task(n, total=None)

            def report(message: str, done: int | None = None, total: int | None = None, _t=task, _n=n) -> None:
                progress.update(_t, description=f"{_n}: {message}", completed=done or 0, total=total)

            ds = data.fetch(n, from_path=from_path, force=force, report=report)
            progress.remove_task(task)
            console.print(_ok(f"{n}: verified, from {ds.source} → {ds.path}"))


@data_app.command("info")
def data_info(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Show what the cache holds for each dataset and whether it verifies."""
    from . import data

    records = [data.info(n) for n in data.DATASETS]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title=f"datasets in {data.cache_path('x').parent}")
    for col in ("name", "cached", "verified", "source", "train / test"):
        table.add_column(col)
    for r in records:
        sizes = f"{r['shapes']['x_train'][0]} / {r['shapes']['x_test'][0]}" if r["shapes"] else "-"
        verified = Text("yes", "green") if r["verified"] else (Text("no", "red") if r["cached"] else "-")
        table.add_row(r["name"], "yes" if r["cached"] else "no", verified, r["source"] or "-", sizes)
    console.print(table)
    for r in records:
        if r["error"]:
            err_console.print(Text.assemble((r["name"], "red"), f": {r['error']}"))


def _model_record(model_id: str) -> dict:
    from .pretrained import where
    from .zoo import get_model
    from .zoo.stats import model_stats

    model = get_model(model_id)
    spec = model.spec
    stats = model_stats(model)
    return {"id": model.id, "version": model.version, "study": model.study, "dataset": spec.recipe.dataset,
            **stats.to_dict(), "reference": asdict(spec.reference), "available": where(model.name)}


@app.command("list")
def list_cmd(
    pattern: Annotated[Optional[str], typer.Argument(help="fnmatch pattern over ids, e.g. 'cnn5*'.")] = None,
    study: StudyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the zoo's models with parameters, MACs per image, the notebook's test accuracy, and where each model's
    ONNX file is: zoo home, weights package, starter pack, hub cache, or not available.

    Examples: `mnistzoo list`, `mnistzoo list 'cnn5*'`, `mnistzoo list --study depth --json`.
    """
    from .zoo import list_models

    records = [_model_record(i) for i in list_models(pattern, study)]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    if not records:
        raise MnistZooError(f"no model matches '{pattern}'; try `mnistzoo list` for all ids")
    table = Table(title=f"mnistzoo: {len(records)} models")
    for col, justify in (("id", "left"), ("ver", "right"), ("study", "left"), ("dataset", "left"),
                         ("params", "right"), ("MACs", "right"), ("notebook test acc", "right"),
                         ("available", "left")):
        table.add_column(col, justify=justify, no_wrap=col == "id")
    for r in records:
        acc = r["reference"]["test_accuracy"]
        table.add_row(r["id"], str(r["version"]), r["study"], r["dataset"], f"{r['params_total']:,}",
                      f"{r['macs']:,}", "-" if acc is None else f"{acc:.4f}", r["available"] or "not available")
    console.print(table)


@app.command("show")
def show_cmd(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="A model id, optionally with @version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show a model's layers, totals, recipe, provenance, reference results and notes."""
    from .zoo import get_model
    from .zoo.stats import model_stats

    model = get_model(model_id)
    stats = model_stats(model)
    spec = model.spec
    if as_json:
        print(json.dumps({"id": model.id, "version": model.version, "study": model.study,
                          **stats.to_dict(with_layers=True), **spec.to_dict()}, indent=2))
        return
    layers = Table(title=f"{model.name} ({model.study})")
    for col, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right")):
        layers.add_column(col, justify=justify)
    for row in stats.layers:
        layers.add_row(row.name, row.type, str(row.output_shape), f"{row.params:,}")
    console.print(layers)
    console.print(f"params: {stats.params_total:,} total, {stats.params_trainable:,} trainable, "
                  f"{stats.params_non_trainable:,} non-trainable; {stats.macs:,} MACs per image")
    facts = Table(show_header=False, box=None)
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in asdict(spec.recipe).items():
        facts.add_row(f"recipe.{key}", str(value))
    for key, value in asdict(spec.provenance).items():
        facts.add_row(f"source.{key}", value)
    for key, value in asdict(spec.reference).items():
        facts.add_row(f"notebook.{key}", "-" if value is None else str(value))
    for key, value in (("notes", spec.notes), ("study notes", spec.study_notes)):
        if value:
            facts.add_row(key, value)
    console.print(facts)


class _TrainProgress(Progress):
    """A step-level bar per model (epoch, step, loss, accuracy, ETA) and a line per finished epoch."""

    def __init__(self, disable: bool) -> None:
        super().__init__(TextColumn("{task.description}", markup=False),
                         TextColumn("epoch {task.fields[epoch]}", markup=False),
                         BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[metrics]}", markup=False),
                         TimeRemainingColumn(), console=err_console, disable=disable)
        self._quiet = disable
        self._bars: dict[str, TaskID] = {}

    def step(self, model_id: str):
        def report(epoch: str, step: int, steps: int, logs: dict) -> None:
            if model_id not in self._bars:
                self._bars[model_id] = self.add_task(model_id, total=steps, epoch=epoch, metrics="")
            elif self.tasks[self._bars[model_id]].fields["epoch"] != epoch:
                self.reset(self._bars[model_id])
            metrics = f"loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f}"
            self.update(self._bars[model_id], completed=step, total=steps, epoch=epoch, metrics=metrics)
        return report

    def epoch_done(self, model_id: str):
        def report(row: dict) -> None:
            if not self._quiet:
                self.console.print(f"{model_id} epoch {row['epoch']}: loss {row['loss']:.4f} "
                                   f"acc {row['accuracy']:.4f} val_loss {row['val_loss']:.4f} "
                                   f"val_acc {row['val_accuracy']:.4f} ({row['seconds']:.1f} s)",
                                   soft_wrap=True)
        return report


@app.command("train")
def train_cmd(
    ids: Annotated[Optional[list[str]], typer.Argument(metavar="[ID]...", help="Model ids to train.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Train every model in the zoo.")] = False,
    study: Annotated[Optional[str], typer.Option(help="Train every model of this study.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override the recipe's epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the recipe's batch size.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (data order, init, dropout); each seed is its own run, "
                                           "in <runs>/<id>@<version>/seed<k>/.")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Train on the first N training images only.")] = None,
    precision: Annotated[str, typer.Option(help="float32 (the notebooks'), or mixed_bfloat16: bfloat16 compute, "
                                                "float32 weights; faster on CPUs with AVX512-BF16 or AMX. The "
                                                "saved model is float32 either way.")] = "float32",
    out: Annotated[Optional[Path], typer.Option(help="Runs directory (default: $MNISTZOO_HOME/runs).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard a partial run and start over.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if the run has finished.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as a JSON list.")] = False,
) -> None:
    """Train models with their original recipe; rerunning a killed run resumes from its last epoch."""
    from .zoo import list_models

    chosen = list(ids or []) + (list_models() if all_models else []) + (list_models(study=study) if study else [])
    if not chosen:
        raise MnistZooError("name at least one model id, or use --all or --study S; see `mnistzoo list`")
    from ._checks import train_options

    for model_id in dict.fromkeys(chosen):  # every name and option checked before TensorFlow is imported
        train_options(model_id, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit, precision=precision)
    from .train import train

    global _interrupt_note
    _interrupt_note = ("each run keeps its last complete epoch; rerun the same command to resume "
                       "(--restart discards a partial run)")
    cards = []
    with _TrainProgress(disable=quiet) as progress:
        for model_id in dict.fromkeys(chosen):
            result = train(model_id, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit, out=out,
                           restart=restart, force=force, precision=precision, on_epoch=progress.epoch_done(model_id),
                           on_step=progress.step(model_id))
            cards.append(result.card)
            if result.skipped and not quiet:
                err_console.print(f"{model_id}: already trained in {result.run_dir} (use --force to retrain)")
    if as_json:
        print(json.dumps(cards, indent=2))
    elif not quiet:
        table = Table(title="training summary")
        for col in ("model", "epochs", "test acc", "notebook", "delta", "test loss", "images/s"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for c in cards:
            ref, ours = c["reference"]["test_accuracy"], c["results"]["test_accuracy"]
            ips = c["images_per_second"]
            table.add_row(f"{c['id']}@{c['version']}", str(c["epochs_run"]), f"{ours:.4f}",
                          "-" if ref is None else f"{ref:.4f}", "-" if ref is None else f"{ours - ref:+.4f}",
                          f"{c['results']['test_loss']:.4f}", "-" if ips is None else f"{ips:,.0f}")
        console.print(table)


class _BuildBoard:
    """The live table of ``mnistzoo build``: each job's state, epoch and time, and the build's ETA."""

    def __init__(self, jobs: list, live: bool) -> None:
        self.rows = {job: {"state": "queued", "epoch": 0, "epochs": None, "seconds": 0.0, "started": None,
                           "note": ""} for job in jobs}
        self.live = None
        if live:
            from rich.live import Live

            self.live = Live(self.render(), console=err_console, refresh_per_second=2, transient=False)

    def __enter__(self) -> "_BuildBoard":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.update(self.render())
            self.live.__exit__(*exc)

    def event(self, job, kind: str, details: dict) -> None:  # noqa: ANN001 - a build.Job
        import time

        row = self.rows[job]
        if kind == "start":
            row.update(state="running", started=row["started"] or time.monotonic())
        elif kind == "epoch":
            row.update(epoch=details["epoch"], seconds=row["seconds"] + details["seconds"])
            row["epochs"] = row["epochs"] or _recipe_epochs(job)
        elif kind == "done":
            row.update(state="skipped" if details.get("skipped") else "done", note="")
        elif kind == "failed":
            row.update(state="failed", note=details.get("error") or "")
        if self.live:
            self.live.update(self.render())

    def render(self) -> Table:
        counts = {s: sum(r["state"] == s for r in self.rows.values())
                  for s in ("queued", "running", "done", "skipped", "failed")}
        eta = self.eta()
        table = Table(title=", ".join(f"{n} {s}" for s, n in counts.items() if n)
                      + ("" if eta is None else f"; about {eta / 60:.0f} min left"))
        for col in ("model", "seed", "state", "epoch", "s/epoch"):
            table.add_column(col, justify="left" if col in ("model", "state") else "right")
        for job, r in self.rows.items():
            per = r["seconds"] / r["epoch"] if r["epoch"] else None
            table.add_row(job.name, str(job.seed), r["state"] + (f": {r['note']}" if r["note"] else ""),
                          f"{r['epoch']}/{r['epochs'] or _recipe_epochs(job)}", "-" if per is None else f"{per:.1f}")
        return table

    def eta(self) -> float | None:
        """Seconds left: epochs still to run times the mean seconds per epoch seen so far, over running jobs."""
        seen = [(r["seconds"], r["epoch"]) for r in self.rows.values() if r["epoch"]]
        if not seen:
            return None
        per_epoch = sum(s for s, _ in seen) / sum(e for _, e in seen)
        left = sum(_recipe_epochs(job) - r["epoch"] for job, r in self.rows.items() if r["state"] in ("queued", "running"))
        parallel = max(1, sum(r["state"] == "running" for r in self.rows.values()))
        return per_epoch * left / parallel


def _recipe_epochs(job) -> int:  # noqa: ANN001 - a build.Job
    from .zoo import get_model

    return job.epochs or get_model(job.name).spec.recipe.epochs


@app.command("build")
def build_cmd(
    ids: Annotated[Optional[list[str]], typer.Argument(metavar="[ID]...", help="Model ids to build.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Build every model in the zoo.")] = False,
    study: StudyOption = None,
    seeds: Annotated[str, typer.Option(help="Seeds to train each model with: 0,1,2 or a range 0-4.")] = "0",
    engine: Annotated[str, typer.Option(help="local (one job after another in this process) or ray (Ray tasks; "
                                             r"needs mnistzoo\[ray]).")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Join the Ray cluster at this address (e.g. auto, or "
                                                        "HOST:6379); default: start a local Ray instance.")] = None,
    cpus_per_job: Annotated[Optional[int], typer.Option(help="CPUs each job gets, and TensorFlow's thread pool size "
                                                             "(Ray default: 1; local default: all).")] = None,
    gpus_per_job: Annotated[float, typer.Option(help="GPUs each Ray job reserves (a fraction shares one).")] = 0.0,
    epochs: Annotated[Optional[int], typer.Option(help="Quick build: this many epochs (not the full recipe).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Quick build: the first N training images only.")] = None,
    runs: Annotated[Optional[Path], typer.Option(help="Runs directory (default: $MNISTZOO_HOME/runs).")] = None,
    results: Annotated[Optional[Path], typer.Option(help="Also copy each finished run's records to "
                                                         "DIR/<id>/seed<k>/ with DIR/<id>/summary.json, and each "
                                                         "unfinished run's resumable state to "
                                                         "DIR/<id>/seed<k>/partial/ (restored from there).")] = None,
    timed: Annotated[bool, typer.Option("--timed/--untimed", help="Measure int8 speed and latency on this machine "
                                                                  "(--untimed: accuracy and parity only, e.g. while "
                                                                  "other work runs beside the build).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print each job's outcome as a JSON list.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No live table.")] = False,
) -> None:
    """Train, export and evaluate every (model, seed) as a job, locally or on Ray; rerun to resume (exit 1 if any
    job failed)."""
    from . import build

    build_plan = build.plan(ids or [], study=study, all_models=all_models, seeds=build.parse_seeds(seeds),
                            epochs=epochs, limit=limit, engine=engine, address=address, cpus_per_job=cpus_per_job,
                            gpus_per_job=gpus_per_job, runs=runs, results=results, timed=timed)
    global _interrupt_note
    _interrupt_note = "each run keeps its last complete epoch; rerun the same command to resume"
    with _BuildBoard(build_plan.jobs, live=not quiet and not as_json) as board:
        outcomes = build.build(build_plan, board.event)
    if as_json:
        print(json.dumps([{"id": o.job.id, "name": o.job.name, "seed": o.job.seed, "state": o.state, "seconds": o.seconds,
                           "test_accuracy": o.test_accuracy, "attempts": o.attempts, "error": o.error}
                          for o in outcomes], indent=2))
    failed = [o for o in outcomes if o.state == "failed"]
    for o in failed:
        _error_line("failed: ", f"{o.job.name} seed {o.job.seed}: {o.error}")
    if failed:
        raise BuildError(f"{len(failed)} of {len(outcomes)} jobs failed (listed above); fix them and rerun "
                         "the same command: finished jobs are skipped")


@app.command("export")
def export_cmd(
    ids: Annotated[Optional[list[str]], typer.Argument(metavar="[ID]...", help="Trained model ids to export.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Export every trained model in the runs directory.")] = False,
    opset: Annotated[str, typer.Option(help="ONNX opset, 13-18; a list such as 13,15,17,18 exports and verifies "
                                            "each (the first is model.onnx).")] = "17",
    quantize: Annotated[Optional[str], typer.Option(help="Also write model.int8.onnx (static QDQ): int8.")] = None,
    atol: Annotated[float, typer.Option(help="Largest |ONNX - Keras| probability difference allowed.")] = 1e-5,
    max_flips: Annotated[int, typer.Option(help="Test images allowed to change predicted class.")] = 0,
    seed: Annotated[int, typer.Option(help="Which training run: the one trained with this seed.")] = 0,
    runs: Annotated[Optional[Path], typer.Option(help="Where the trained runs are (default: $MNISTZOO_HOME/runs).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write under DIR/<id>@<version>/ (seed 0) or "
                                                     "DIR/<id>@<version>-seed<k>/ (default: the run directory).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the export records as a JSON list.")] = False,
) -> None:
    """Export trained models to ONNX, verified against Keras on the whole test set (exit 1 when parity fails)."""
    from ._checks import export_options, parse_opsets
    from .errors import ParityError

    opsets = export_options(opsets_asked=parse_opsets(opset), atol=atol, max_flips=max_flips, quantize=quantize,
                            seed=seed)
    from .export import export, find_run, trained_models

    chosen = list(ids or []) + (trained_models(runs, seed) if all_models else [])
    if not chosen:
        where = (f"no trained models in {runs or 'the zoo home'}" if all_models
                 else "name at least one trained model id, or use --all")
        raise MnistZooError(f"{where}; nothing trained yet? run `mnistzoo train ID` first")
    for model_id in dict.fromkeys(chosen):  # every name checked before the first export starts
        find_run(model_id, runs, seed)
    if out is not None:
        output_dir(out, "--out")
    global _interrupt_note
    _interrupt_note = "files already verified are kept, none half-written; rerun the same command to export again"
    records, failures = [], []
    for model_id in dict.fromkeys(chosen):
        try:
            records.append(export(model_id, opsets=opsets, runs=runs, out=out, atol=atol, max_flips=max_flips,
                                  quantize=quantize, seed=seed).record)
        except ParityError as exc:
            failures.append(str(exc))
    if as_json:
        print(json.dumps(records, indent=2))
    elif records:
        table = Table(title="ONNX export: parity with Keras on the full test set")
        for col in ("model", "opset", "file", "flipped", "max |diff|", "mean |diff|", "keras acc", "onnx acc", "int8 acc"):
            table.add_column(col, justify="left" if col in ("model", "file") else "right")
        for rec in records:
            for i, (opset_name, o) in enumerate(rec["opsets"].items()):
                int8 = rec.get("int8") if i == 0 and rec.get("int8", {}).get("file") else None
                table.add_row(rec["name"], opset_name, o["file"], str(o["flipped"]), f"{o['max_abs_diff']:.1e}",
                              f"{o['mean_abs_diff']:.1e}", f"{o['keras_accuracy']:.4f}", f"{o['onnx_accuracy']:.4f}",
                              f"{int8['int8_accuracy']:.4f} ({int8['accuracy_delta']:+.4f})" if int8 else "-")
        console.print(table)
    if failures:
        raise ParityError(failures[0] if len(failures) == 1 else f"{len(failures)} exports failed parity: "
                          + " | ".join(failures))


def _int_list(text: str, option: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    values = [int(part) for part in parts if part.isascii() and part.isdigit() and len(part) <= 9]
    if len(values) != len(parts):
        values = []
    if not values or any(v <= 0 for v in values):
        raise InvalidInput(f"{option} takes positive integers separated by commas, like 1,32,256; got {text!r}")
    return values


@app.command("eval")
def eval_cmd(
    models: Annotated[list[Path], typer.Argument(metavar="MODEL.onnx|ID...", help="ONNX files to evaluate, or "
                                                 "model ids (their published file: zoo home, weights package, "
                                                 "starter pack, hub).")],
    dataset: Annotated[Optional[str], typer.Option(help="Test set for a file without an mnistzoo card: "
                                                        "mnist or fashion_mnist.")] = None,
    keras_path: Annotated[Optional[Path], typer.Option("--keras", help="Keras checkpoint for the parity check "
                                                                      "(default: the one named in the card).")] = None,
    provider: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads (default: all cores).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes to time, comma-separated.")] = "1,32,256",
    runs: Annotated[int, typer.Option(help="Timed runs per batch size, after a warm-up.")] = 200,
    seconds: Annotated[Optional[float], typer.Option(help="Time each batch size for this long instead.")] = None,
    compare_keras: Annotated[bool, typer.Option("--compare-keras", help="Also time the Keras model "
                                                                        "(tf.function and predict).")] = False,
    tuned: Annotated[bool, typer.Option("--tune/--no-tune", help="Time each batch size with the fastest "
                                        "onnxruntime settings for it (threads, spinning, optimisation level, "
                                        "images per call), or all with the defaults.")] = True,
    atol: Annotated[float, typer.Option(help="Parity tolerance on |ONNX - Keras| probabilities.")] = 1e-5,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the results here as JSON.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write confusion-matrix PNGs into this directory.")] = None,
) -> None:
    """Accuracy, parity with the Keras checkpoint (exit 1 when it fails) and latency of ONNX files.

    Examples: `mnistzoo eval model.onnx --json r.json`; `mnistzoo eval cnn5_k3 --batch-sizes 1,256`.
    """
    from .evaluate import evaluate
    from .errors import VerificationError
    from .pretrained import model_file

    sizes = _int_list(batch_sizes, "--batch-sizes")
    models = [model_file(str(m)) for m in models]  # every argument resolved before any is evaluated
    if json_path is not None:
        output_file(json_path, "--json")
    results = [evaluate(m, dataset=dataset, keras_path=keras_path, provider=provider, threads=threads,
                        batch_sizes=sizes, compare_keras=compare_keras, plots=plots, runs=runs, seconds=seconds,
                        atol=atol, tuned=tuned) for m in models]
    for r in results:
        _print_eval(r)
    if json_path is not None:
        from .records import write_record

        write_record(json_path, results[0] if len(results) == 1 else results)
    failed = [r["path"] for r in results if r["parity"] is not None and not r["parity"]["passed"]]
    if failed:
        raise VerificationError(f"parity with Keras failed for {', '.join(failed)}; see the parity line above")


def _print_eval(r: dict) -> None:
    head = Table(title=f"{r['path']} ({r['name'] or 'no card'}) on {r['dataset']} test, {r['images']:,} images")
    for col in ("accuracy", "loss", *(f"class {i}" for i in range(10))):
        head.add_column(col, justify="right")
    head.add_row(f"{r['accuracy']:.4f}", f"{r['loss']:.4f}", *(f"{a:.3f}" for a in r["per_class_accuracy"]))
    console.print(head)
    p = r["parity"]
    if p is None:
        console.print("parity: no Keras checkpoint found (give one with --keras)")
    else:
        console.print(Text.assemble(
            f"parity with {p['checkpoint']}: agreement {p['agreement']:.4f}, flipped {p['flipped']}, "
            f"ties {p['ties']}, max |diff| {p['max_abs_diff']:.1e}, mean |diff| {p['mean_abs_diff']:.1e}, "
            f"accuracy delta {p['accuracy_delta']:+.4f}; criterion {p['criterion']}: ",
            ("passed", "green") if p["passed"] else ("FAILED", "red")))
    table = Table(title="latency")
    for col in ("runtime", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s", "threads", "settings", "vs ORT p50"):
        table.add_column(col, justify="left" if col in ("runtime", "settings") else "right")
    ort_p50 = {row["batch_size"]: row["p50_ms"] for row in r["latency"]}
    for row in r["latency"] + r.get("keras_latency", []):
        chunk = f", calls of {row['chunk']} images" if row.get("chunk") else ""
        settings = ("" if row.get("optimization") is None else
                    f"{'tuned: ' if row.get('tuned') else ''}{'spinning, ' if row['spinning'] else ''}"
                    f"{row['optimization']} optimisation{chunk}")
        table.add_row(row["provider"], str(row["batch_size"]), f"{row['p50_ms']:.3f}", f"{row['p90_ms']:.3f}",
                      f"{row['p99_ms']:.3f}", f"{row['images_per_s']:,.0f}", str(row["threads"]), settings,
                      f"{row['p50_ms'] / ort_p50[row['batch_size']]:.1f}x")
    console.print(table)


@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Argument(metavar="ID", help="Model id, or id@version.")],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="PNG or JPEG files: photos, scans, "
                                                                         "drawings of any size.")],
    invert: Annotated[Optional[bool], typer.Option("--invert/--no-invert", help="Force the polarity: dark digits "
                                                   "on light paper (--invert) or light on dark (--no-invert); "
                                                   "default: detected.")] = None,
    prepare: Annotated[Optional[str], typer.Option(help="mnist (crop, fit 20x20, centre by mass: the default for "
                                                        "pictures), resize (plain 28x28 resize) or none.")] = None,
    show_input: Annotated[Optional[Path], typer.Option("--show-input", help="Write the 28x28 images the model "
                                                                            "saw to this PNG.")] = None,
    seed: Annotated[int, typer.Option(help="Which training run (the published zoo holds seed 0).")] = 0,
    int8: Annotated[bool, typer.Option("--int8", help="Use the model's int8 file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Classify pictures with a pretrained model (zoo home, weights packages, starter pack, then MNISTZOO_HUB).

    Pictures are prepared the way MNIST was made: polarity detected, paper and specks removed,
    cropped to the ink, fitted to 20x20 and centred by mass in 28x28.
    """
    import numpy as np

    from .preparation import as_images, save_inputs
    from .pretrained import load_pretrained

    if show_input is not None:
        output_file(show_input, "--show-input")
    classifier = load_pretrained(model, seed=seed, int8=int8)
    try:
        pixels = as_images([str(p) for p in images], invert=invert, prepare=prepare,
                           dataset=classifier.card["dataset"])
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    probs = classifier.predict_proba(pixels)
    if show_input is not None:
        save_inputs(pixels, show_input)
    rows = [{"image": str(path), "label": int(p.argmax()), "class_name": classifier.class_names[int(p.argmax())],
             "top3": [{"label": int(i), "class_name": classifier.class_names[int(i)], "probability": float(p[i])}
                      for i in np.argsort(p)[::-1][:3]]} for path, p in zip(images, probs)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{classifier.card['name']} ({classifier.card['dataset']}, from {classifier.source})")
    for col in ("image", "label", "top-3 probabilities"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["image"], f"{row['label']} {row['class_name']}",
                      ", ".join(f"{t['class_name']} {t['probability']:.3f}" for t in row["top3"]))
    console.print(table)
    if show_input is not None:
        console.print(_ok(f"the 28x28 inputs → {show_input}"))


@app.command("publish")
def publish_cmd(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Hub directory to write (created if needed).")],
    ids: Annotated[Optional[list[str]], typer.Argument(metavar="[ID]...", help="Models to publish "
                                                                              "(default: all).")] = None,
    runs: Annotated[Optional[Path], typer.Option(help="Where the runs are (default: $MNISTZOO_HOME/runs).")] = None,
    results: Annotated[Optional[Path], typer.Option(help="Rebuild from the weights kept in this results/ folder "
                                                         "instead of copying runs (what `make weights` does).")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="With --results: the committed manifest every rebuilt "
                                                          "file must match (exit 1 if one differs).")] = None,
    update: Annotated[bool, typer.Option("--update", help="With --manifest: rewrite it from this rebuild (after a "
                                                          "deliberate change of the export route).")] = False,
) -> None:
    """Write a hub: each model's float32 and int8 ONNX files, Keras weights and card, with manifest.json.

    Serve DIR with any static file server and point MNISTZOO_HUB at it, or package it with `mnistzoo package`.

    Examples: `mnistzoo publish /srv/hub cnn5_k3`;
    `mnistzoo publish dist/zoo --results results --manifest published/manifest.json`.
    """
    if results is None:
        if manifest is not None or update:
            raise InvalidInput("--manifest and --update check a rebuild; add --results results")
        from .publish import publish_runs

        entries = publish_runs(directory, ids, runs=runs)
    else:
        from .publish import rebuild

        done = rebuild(results, directory, ids, manifest=manifest, update=update,
                       on_model=lambda name: console.print(f"exporting {name} …"))
        entries = done.entries
    for e in entries:
        console.print(_ok(f"{e.name} seed {e.seed} {e.kind}: {e.file} ({e.size:,} bytes, sha256 {e.sha256[:12]}…)"))
    console.print(f"{len(entries)} files → {directory / 'manifest.json'}")


@app.command("package")
def package_cmd(
    zoo: Annotated[Path, typer.Argument(metavar="ZOO", help="A published zoo (a hub directory).")],
    out: Annotated[Path, typer.Option(help="Where to write the wheels.")] = Path("dist/weights"),
) -> None:
    """Build pip-installable weights packages (one per study, ONNX apart from Keras weights) from a published zoo.

    Example: `mnistzoo package dist/zoo --out dist/weights && pip install dist/weights/*.whl`.
    """
    from . import __version__
    from .packages import build_wheels

    for wheel in build_wheels(zoo, out, __version__):
        console.print(_ok(f"{wheel} ({wheel.stat().st_size:,} bytes)"))


@app.command("pull")
def pull_cmd(
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Model ids, or id@version.")],
    hub: Annotated[Optional[str], typer.Option(help="Hub directory or URL (default: $MNISTZOO_HUB).")] = None,
    seed: Annotated[int, typer.Option(help="Which training run (the published zoo holds seed 0).")] = 0,
) -> None:
    """Download models from a hub into the cache, each file checked by SHA-256 (exit 1 on a mismatch).

    Example: `MNISTZOO_HUB=https://example.org/hub mnistzoo pull cnn5_k3`.
    """
    from .hub import pull
    from .pretrained import resolve

    names = [resolve(i) for i in ids]  # every id checked before anything is downloaded
    for model_id, version in names:
        for kind, path in pull(model_id, version, hub, seed).items():
            console.print(_ok(f"{model_id}@{version} {kind}: verified → {path}"))


@app.command("serve")
def serve_cmd(
    ids: Annotated[Optional[list[str]], typer.Argument(metavar="[ID]...", help="Models to serve (default: every "
                                                                              "local one: zoo home, starter pack, "
                                                                              "hub cache).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 exposes the page to your "
                                           "network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    r"""A local page to draw or upload a digit and compare every model's reading, with a JSON API.

    Needs the serve extra: pip install 'mnistzoo\[serve]'. Ctrl-C stops it.
    """
    from .serve import serve

    serve(ids, host=host, port=port, ready=lambda url: console.print(f"mnistzoo serve: {url} (Ctrl-C stops it)"))


@app.command("report")
def report_cmd(
    study: StudyOption = None,
    runs: Annotated[Optional[Path], typer.Option(help="Where the run records are: run directories or their "
                                                      "copies, e.g. results (default: $MNISTZOO_HOME/runs).")] = None,
    out: Annotated[Path, typer.Option(help="Directory to write index.html, README.md and img/ into.")] = Path("report"),
) -> None:
    """Build the report: a leaderboard and each study's analysis with our numbers beside the notebook's.

    Writes a self-contained HTML page (opens offline, from disk), a Markdown summary and the PNGs.
    Models not trained with their full recipe are listed as such, never filled in.
    """
    from .report import build_report
    from .runs import runs_dir

    page = build_report(runs if runs is not None else runs_dir(), out, study)
    console.print(_ok(f"report → {page} (summary: {out / 'README.md'})"))


def main() -> None:
    """Entry point: every error, typer's usage errors included, is one line on stderr with its exit code."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    logging.basicConfig(format="%(message)s", level=logging.WARNING)  # warnings for people: one plain line
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        code = exc.exit_code
    except ClickException as exc:
        _error_line("error: ", exc.format_message() + _usage_hint(exc))
        code = exc.exit_code
    except MnistZooError as exc:
        _error_line("error: ", str(exc))
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    if code == 130:  # typer turns Ctrl-C into exit code 130
        _error_line("interrupted: ", _interrupt_note)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_hint(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    return f"; see `{ctx.command_path} --help`" if ctx is not None else ""


def _error_line(label: str, message: str) -> None:
    """One line on stderr, the message literal except that control characters are shown escaped."""
    err_console.print(Text.assemble((label, "red"), literal(message)), soft_wrap=True)
