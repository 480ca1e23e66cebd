"""The ``mnistzoo`` command: a thin typer layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from . import data
from .errors import MnistZooError

app = typer.Typer(help="A model zoo of classic MNIST and Fashion-MNIST networks.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch, verify and inspect the datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


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
