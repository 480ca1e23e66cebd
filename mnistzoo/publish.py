"""Publishing: a hub from the zoo home's runs, or the published zoo rebuilt from the committed checkpoints.

:func:`publish_runs` copies exported runs into a hub directory (``mnistzoo publish DIR``). :func:`rebuild`
(``mnistzoo publish DIR --results results``, what ``make weights`` runs) makes the published zoo from the
weights files kept in ``results/<id>/seed0/``: each is exported through the normal verified export (float32
and int8, no timing) in a scratch runs directory, and its files are written in the hub layout of
:mod:`mnistzoo.hub`. Every published file is a pure function of the checkpoint, the dataset, the mnistzoo
version and the converter's versions (which the manifest records), so a rebuild on any CPU gives the bytes of
the committed manifest (``published/manifest.json``); a file that differs is an error (exit 1), not a new
version, unless ``update`` says the export route changed and the manifest is to be rewritten.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._checks import output_dir
from ._io import atomic_path
from .errors import InvalidInput, NotFound, VerificationError
from .hub import KINDS, MANIFEST, HubFile, copy_into, load_manifest, manifest_text, merged, put_files, read_manifest
from .pretrained import in_runs, resolve, exported_models
from .records import TrainCard, read_record
from .runs import CARD, DEFAULT_SEED, PUBLISHED_SEED, WEIGHTS, run_dir, runs_dir, seed_dir_name

PUBLISHED_KINDS = ("onnx", "int8", "weights", "card", "test_input", "test_output")
EXPORTED_KINDS = ("onnx", "int8")  # made by the rebuild; the others are the committed files, copied
TOOLCHAIN = ("mnistzoo", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")  # what a file's bytes depend on


@dataclass
class Rebuilt:
    """What :func:`rebuild` made: the published entries, and those that differ from the committed manifest."""

    directory: Path
    entries: list[HubFile]
    differing: list[str]
    missing: list[str]


def publish_runs(directory: Path, names: list[str] | None = None, *, runs: Path | None = None,
                 kinds: tuple[str, ...] = PUBLISHED_KINDS) -> list[HubFile]:
    """Copy exported seed-0 runs (default: all) into a hub directory and (re)write its manifest.

    Every name is checked, and every run's files found, before a byte is copied."""
    output_dir(Path(directory), "DIR")
    names = list(dict.fromkeys(names or exported_models(runs)))
    if not names:
        raise NotFound(f"no exported models in {runs_dir(runs)}; run `mnistzoo train ID && mnistzoo export ID` first")
    files: dict[tuple[str, int, int, str], Path] = {}
    for name in names:
        model_id, version = resolve(name)
        for kind in kinds:
            source = in_runs(model_id, version, kind, runs)
            if source is None and kind == "onnx":
                raise NotFound(f"{model_id}@{version} has no verified ONNX export in {runs_dir(runs)}; run "
                               f"`mnistzoo export {model_id}` first")
            if source is not None:
                files[(model_id, version, DEFAULT_SEED, kind)] = source
    return copy_into(Path(directory), files)


def committed_models(results: Path) -> list[str]:
    """``id@version`` of every model whose seed-0 weights are kept in ``results/<id>/seed0/``, in zoo order."""
    from .zoo import get_model, list_models

    found = []
    for model_id in list_models():
        run = Path(results) / model_id / seed_dir_name(PUBLISHED_SEED)
        if (run / WEIGHTS).is_file() and (run / CARD).is_file():
            found.append(get_model(model_id).name)
    return found


def toolchain() -> dict[str, str]:
    """The versions a published file's bytes depend on (imports the ``train`` extra)."""
    import importlib.metadata

    return {name: importlib.metadata.version(name) for name in TOOLCHAIN}


def rebuild(results: Path, directory: Path, ids: list[str] | None = None, *, manifest: Path | None = None,
            update: bool = False, on_model: Callable[[str], None] | None = None) -> Rebuilt:
    """Export every committed checkpoint in ``results`` (or those of ``ids``) into the published zoo
    ``directory`` and compare each file with ``manifest``.

    Raises :class:`VerificationError` (exit 1) when a file's SHA-256 differs from the manifest's, or the manifest
    lists a file this rebuild did not make, unless ``update`` (then the manifest is rewritten). With no
    ``manifest`` nothing is compared.
    """
    from ._extras import require_extra

    require_extra("train", "rebuilding the published zoo")
    results, directory = Path(results), Path(directory)
    if not results.is_dir():
        raise InvalidInput(f"--results {results} is not a directory; give the results/ folder of a clone")
    output_dir(directory, "DIR")
    if update and manifest is None:
        raise InvalidInput("--update rewrites the committed manifest; name it with --manifest")
    committed = committed_models(results)
    names = [_name(i) for i in ids] if ids else committed
    absent = [n for n in names if n not in committed]
    if absent:
        raise NotFound(f"{', '.join(absent)}: no weights kept in {results} (results/<id>/seed0/{WEIGHTS}); train "
                       "them with `mnistzoo build ID --seeds 0 --results results`")
    if not names:
        raise NotFound(f"{results} keeps no weights (results/<id>/seed0/{WEIGHTS}); train with `mnistzoo build --all "
                       "--seeds 0 --results results`")
    expected = _expected(manifest) if manifest is not None and Path(manifest).is_file() else None
    if manifest is not None and expected is None and not update:
        raise NotFound(f"--manifest {manifest}: no such file; add --update to write it")
    entries: list[HubFile] = []
    for name in names:
        if on_model:
            on_model(name)
        entries += _rebuild_one(results, directory, name)
    differing, missing = _compare(entries, expected, names) if expected is not None else ([], [])
    tools = toolchain()
    if (differing or missing) and not update:
        built_with = _built_with(manifest) if manifest is not None else {}
        changed = {k: f"{built_with.get(k)} -> {v}" for k, v in tools.items() if built_with.get(k) != v}
        raise VerificationError(
            f"rebuilt files differ from {manifest}: {', '.join(differing + missing)}"
            + (f" (the toolchain changed: {changed})" if changed else " (same toolchain: a source of variation the "
               "export does not pin; report it)")
            + "; if the export route changed on purpose, rerun with --update and commit the manifest")
    _write(directory / MANIFEST, merged(load_manifest(directory), entries), tools)
    if update and manifest is not None:
        _write(Path(manifest), merged(_expected_entries(manifest) if Path(manifest).is_file() else [], entries), tools)
    return Rebuilt(directory, entries, differing, missing)


def _name(model_id: str) -> str:
    model_id, version = resolve(model_id)
    return f"{model_id}@{version}"


def _rebuild_one(results: Path, directory: Path, name: str) -> list[HubFile]:
    """One model's published files: its committed weights exported (verified, with int8) in a scratch run, and the
    committed weights, card and test vectors beside them."""
    from .export import export

    model_id, version = name.split("@")
    source = results / model_id / seed_dir_name(PUBLISHED_SEED)
    card = read_record(source / CARD, TrainCard, f"restore {source / CARD} from git")
    if card["name"] != name or card["seed"] != PUBLISHED_SEED or not card.get("weights_sha256"):
        raise InvalidInput(f"{source / CARD}: not the seed-{PUBLISHED_SEED} card of {name} with its weights' SHA-256; "
                           "restore it from git")
    with tempfile.TemporaryDirectory(prefix="mnistzoo-rebuild-") as tmp:
        runs = Path(tmp)
        run = run_dir(name, PUBLISHED_SEED, runs)
        run.mkdir(parents=True)
        for file in (CARD, WEIGHTS):
            shutil.copyfile(source / file, run / file)
        export(model_id, runs=runs, seed=PUBLISHED_SEED, quantize="int8", measure_speed=False)
        files = {(model_id, int(version), PUBLISHED_SEED, kind): path for kind in EXPORTED_KINDS
                 if (path := in_runs(model_id, int(version), kind, runs)) is not None}
        for kind in (k for k in PUBLISHED_KINDS if k not in EXPORTED_KINDS):
            committed = source / KINDS[kind]
            if not committed.is_file():
                raise NotFound(f"{committed}: missing beside the kept weights; rebuild the records with `mnistzoo "
                               f"build {model_id} --seeds 0 --results {results}`")
            files[(model_id, int(version), PUBLISHED_SEED, kind)] = committed
        return put_files(directory, files)


def _expected_entries(manifest: Path) -> list[HubFile]:
    return read_manifest(Path(manifest).read_text(encoding="utf-8"), str(manifest))


def _expected(manifest: Path) -> dict[tuple, HubFile]:
    return {e.key: e for e in _expected_entries(manifest)}


def _built_with(manifest: Path) -> dict:
    try:
        return dict(json.loads(Path(manifest).read_text(encoding="utf-8")).get("built_with") or {})
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _compare(entries: list[HubFile], expected: dict[tuple, HubFile], names: list[str]) -> tuple[list[str], list[str]]:
    """Files whose hash or size differs from the manifest's, and files the manifest lists for these models that
    the rebuild did not make."""
    made = {e.key: e for e in entries}
    differing = [e.file for key, e in made.items() if key in expected and (expected[key].sha256, expected[key].size)
                 != (e.sha256, e.size)]
    differing += [f"{e.file} (not in the manifest)" for key, e in made.items() if key not in expected]
    missing = [f"{e.file} (not made)" for key, e in expected.items() if e.name in names and key not in made]
    return differing, missing


def _write(path: Path, entries: list[HubFile], tools: dict[str, str]) -> None:
    """A format-2 manifest with the toolchain that made its files."""
    doc = json.loads(manifest_text(entries))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**doc, "built_with": tools}, indent=2) + "\n")


def weights_table(manifest: Path, results: Path) -> str:
    """The README's table of every model's published files (like torchvision's weights tables), from the committed
    manifest, the training cards in ``results`` and the specs; a model not published yet says so."""
    from .zoo import get_model, list_models

    entries = {e.key: e for e in read_manifest(Path(manifest).read_text(encoding="utf-8"), str(manifest))}
    rows = ["| model | its notebook | test acc. (seed 0) | notebook's | params | ONNX | int8 | Keras weights | "
            "ONNX SHA-256 |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for model_id in list_models():
        model = get_model(model_id)
        spec, key = model.spec, (model.id, model.version, PUBLISHED_SEED)
        onnx, int8, weights = (entries.get((*key, kind)) for kind in ("onnx", "int8", "weights"))
        ref = spec.reference.test_accuracy
        number = spec.provenance.section.split()[0]
        notebook = spec.provenance.notebook_title + (f" §{number}" if number[0].isdigit() else "")
        if onnx is None:
            rows.append(f"| `{model.name}` | {notebook} | not published yet | {ref if ref is not None else '-'} | "
                        f"| | | | |")
            continue
        card = read_record(Path(results) / model.id / seed_dir_name(PUBLISHED_SEED) / CARD, TrainCard,
                           "restore it from git")
        from .zoo.stats import model_stats

        rows.append(f"| `{model.name}` | {notebook} | {card['results']['test_accuracy']:.4f} | "
                    f"{ref if ref is not None else '-'} | {model_stats(model).params_total:,} | "
                    f"{_mb(onnx.size)} | {_mb(int8.size) if int8 else 'none'} | {_mb(weights.size) if weights else '-'} "
                    f"| `{onnx.sha256[:12]}` |")
    return "\n".join(rows) + "\n"


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"
