"""The ``mnistzoo`` command: a thin typer layer over the Python API."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from . import data
from .errors import MnistZooError

app = typer.Typer(help="A model zoo of classic MNIST and Fashion-MNIST networks.",
                  epilog="Environment: MNISTZOO_HOME (datasets and runs; default ~/.cache/mnistzoo), "
                         "MNISTZOO_DATASETS_URL (base URL of the canonical dataset files).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch, verify and inspect the datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


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
    names = _names(name)
    if from_path is not None and len(names) != 1:
        raise MnistZooError("--from needs one dataset name (mnist or fashion_mnist), not 'all'")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        for n in names:
            task = progress.add_task(n, total=None)

            def report(message: str, done: int | None = None, total: int | None = None, _t=task, _n=n) -> None:
                progress.update(_t, description=f"{_n}: {message}", completed=done or 0, total=total)

            ds = data.fetch(n, from_path=from_path, force=force, report=report)
            progress.remove_task(task)
            console.print(f"[green]✓[/] {n}: verified, from {ds.source} → {ds.path}")


@data_app.command("info")
def data_info(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Show what the cache holds for each dataset and whether it verifies."""
    records = [data.info(n) for n in data.DATASETS]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title=f"datasets in {data.cache_path('x').parent}")
    for col in ("name", "cached", "verified", "source", "train / test"):
        table.add_column(col)
    for r in records:
        sizes = f"{r['shapes']['x_train'][0]} / {r['shapes']['x_test'][0]}" if r["shapes"] else "-"
        verified = "[green]yes[/]" if r["verified"] else ("[red]no[/]" if r["cached"] else "-")
        table.add_row(r["name"], "yes" if r["cached"] else "no", verified, r["source"] or "-", sizes)
    console.print(table)
    for r in records:
        if r["error"]:
            err_console.print(f"[red]{r['name']}[/]: {r['error']}")


def _model_record(model_id: str) -> dict:
    from .zoo import get_model
    from .zoo.stats import model_stats

    model = get_model(model_id)
    spec = model.spec
    stats = model_stats(model.build())
    return {"id": model.id, "version": model.version, "study": model.study, "dataset": spec.recipe.dataset,
            **stats.to_dict(), "reference": asdict(spec.reference)}


@app.command("list")
def list_cmd(
    pattern: Annotated[Optional[str], typer.Argument(help="fnmatch pattern over ids, e.g. 'cnn5*'.")] = None,
    study: Annotated[Optional[str], typer.Option(help="Only this study: depth, cnn, activations, fashion, init.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the zoo's models with parameters, MACs per image and the notebook's test accuracy."""
    from .zoo import list_models, studies

    if study is not None and study not in studies():
        raise MnistZooError(f"unknown study '{study}'; choose one of: {', '.join(studies())}")
    records = [_model_record(i) for i in list_models(pattern, study)]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    if not records:
        raise MnistZooError(f"no model matches '{pattern}'; try `mnistzoo list` for all ids")
    table = Table(title=f"mnistzoo: {len(records)} models")
    for col, justify in (("id", "left"), ("ver", "right"), ("study", "left"), ("dataset", "left"),
                         ("params", "right"), ("MACs", "right"), ("notebook test acc", "right")):
        table.add_column(col, justify=justify, no_wrap=col == "id")
    for r in records:
        acc = r["reference"]["test_accuracy"]
        table.add_row(r["id"], str(r["version"]), r["study"], r["dataset"], f"{r['params_total']:,}",
                      f"{r['macs']:,}", "-" if acc is None else f"{acc:.4f}")
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
    stats = model_stats(model.build())
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


@app.command("train")
def train_cmd(
    ids: Annotated[Optional[list[str]], typer.Argument(metavar="[ID]...", help="Model ids to train.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Train every model in the zoo.")] = False,
    study: Annotated[Optional[str], typer.Option(help="Train every model of this study.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override the recipe's epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the recipe's batch size.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (data order, init, dropout).")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Train on the first N training images only.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Runs directory (default: $MNISTZOO_HOME/runs).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard a partial run and start over.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if the run has finished.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as a JSON list.")] = False,
) -> None:
    """Train models with their original recipe; rerunning a killed run resumes from its last epoch."""
    from .zoo import list_models, studies

    if study is not None and study not in studies():
        raise MnistZooError(f"unknown study '{study}'; choose one of: {', '.join(studies())}")
    chosen = list(ids or []) + (list_models() if all_models else []) + (list_models(study=study) if study else [])
    if not chosen:
        raise MnistZooError("name at least one model id, or use --all or --study S; see `mnistzoo list`")
    from .train import train

    cards = []
    for model_id in dict.fromkeys(chosen):
        def report(row: dict, _id: str = model_id) -> None:
            if not quiet:
                err_console.print(f"{_id} epoch {row['epoch']}: loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
                                  f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                                  f"({row['seconds']:.1f} s)", highlight=False)

        result = train(model_id, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit, out=out,
                       restart=restart, force=force, on_epoch=report)
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


def main() -> None:
    """Entry point: run the app, turning MnistZooError into a one-line message and its exit code."""
    try:
        app()  # typer itself reports usage errors (exit code 2)
    except MnistZooError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        sys.exit(130)
