"""Reports: each study's closing analysis redone with our numbers beside the notebook's, and a leaderboard.

:func:`build_report` reads the records under ``runs``: run directories (``$MNISTZOO_HOME/runs/<id>@<v>/seed<k>/``)
or their copies (``results/<id>/seed<k>/``), each with ``card.json``, ``history.json``, ``curves.png``,
``export.json``, ``eval.json`` and the trained kernels (``model.keras``, or ``kernels.png`` drawn
from it). It writes ``index.html`` (self-contained: images inlined, no external assets),
``README.md`` and ``img/*.png``. Only runs trained with their full recipe count; every other
model is listed as not trained. A model trained under several seeds shows mean ± std (n) and each
seed's value; the model's figures and parity come from its lowest seed (seed 0 by default).

A study's conclusion (``[study.conclusion]`` in zoo_specs) is checked through claims of four forms:

- ``A < B`` (or ``<=``, ``>``, ``>=``): A's test accuracy against B's;
- ``best A``: A has the study's highest test accuracy;
- ``overfits A``: A's validation loss ends at least 25% above its minimum;
- ``fits A``: it ends within 25% of its minimum.

Each comparison is also set against two kinds of noise: the test set's (binomial, 2σ of a difference of
two accuracies on 10,000 images) and, where both models have at least two seeds, the seeds' (Welch's
t-test of the two means, two-sided; a claim survives across seeds when the difference has the claimed
sign and p < 0.05). A model's own gap to the notebook is judged the same way: with at least two seeds, the
notebook's single run is set against the 95% prediction interval of one more run of ours (mean ± t·s·√(1 + 1/n));
inside it, the gap is what another seed could give; outside, it is a real difference.
"""

from __future__ import annotations

import base64
import html
import json
import operator
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import data
from ._checks import output_dir
from ._io import atomic_path
from ._plot import pyplot, save_png
from .errors import InvalidInput, MnistZooError, literal
from .records import EvalRecord, ExportRecord, TrainCard, read_history, read_record
from .runs import SEED_DIR
from .evaluate import plot_confusion
from .zoo import get_model, list_models
from .zoo.base import ZooModel
from .errors import SpecError
from .zoo.specs import STUDIES, StudyInfo, study_info
from .zoo.stats import ModelStats, architecture, has_layers, hidden_dense_layers, model_stats

if TYPE_CHECKING:
    import keras

OVERFIT_RATIO = 1.25
TEST_IMAGES = 10_000  # both test sets; sets the binomial noise of a test accuracy
VIOLIN_SAMPLE = 20_000  # kernel values drawn per layer for a violin; the largest kernels hold 1.6 M
RECORDS = ("history.json", "export.json", "eval.json")  # besides card.json, read by find_runs
SIGNIFICANCE = 0.05  # Welch's t-test across seeds
COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
Cell = tuple[str, float | None]  # (text shown, sort key)


# ---------------------------------------------------------------- records


REBUILD = "rebuild it (retrain, re-export or re-evaluate its model) or delete its run directory"
KINDS = {"card.json": TrainCard, "export.json": ExportRecord, "eval.json": EvalRecord}


def _read_json(path: Path) -> dict | list:
    """A run record (``card.json``, ``history.json``, ...), checked; a bad one names the fix."""
    return read_history(path, REBUILD) if path.name == "history.json" else read_record(path, KINDS[path.name], REBUILD)


def find_runs(runs: Path) -> dict[str, dict[int, tuple[Path, dict]]]:
    """Each model's (latest version's) runs under ``runs`` by id, then by seed: record directory and card.

    Reads ``<dir>/seed<k>/card.json`` and, from before seeds had directories, ``<dir>/card.json``; never moves
    anything.
    """
    if not runs.is_dir():
        raise MnistZooError(f"{runs}: no such directory; give the runs directory with --runs (e.g. results)")
    latest = {m: get_model(m).version for m in list_models()}
    found: dict[str, dict[int, tuple[Path, dict]]] = {}
    paths = [p for p in runs.glob("*/seed*/card.json") if SEED_DIR.fullmatch(p.parent.name)]
    for card_path in sorted([*runs.glob("*/card.json"), *paths]):
        card = _read_json(card_path)
        if latest.get(card["id"]) == card["version"]:
            found.setdefault(card["id"], {})[card["seed"]] = card_path.parent, card
    return found


@dataclass
class Entry:
    """One zoo model with whatever records it has."""

    model: ZooModel
    stats: ModelStats
    records: dict[str, object]  # of the run shown: the lowest full-recipe seed (else the lowest seed)
    source: Path | None
    seed_cards: dict[int, dict]  # every full-recipe run's card, by seed

    @property
    def id(self) -> str:
        return self.model.id

    @property
    def card(self) -> dict | None:
        return self.records.get("card.json")  # type: ignore[return-value]

    @property
    def trained(self) -> bool:
        """Trained with its full recipe: only these runs are reported."""
        return self.card is not None and bool(self.card.get("recipe_is_original"))

    @property
    def status(self) -> str:
        if self.trained:
            return "full recipe"
        if self.card is not None:
            return "partial run (" + ", ".join(f"{k}={v}" for k, v in self.card["overrides"].items()) + ")"
        return "not trained"

    def record(self, name: str):  # noqa: ANN201 - a parsed JSON record
        """A record of a full-recipe run (None for any other run: its numbers are never shown)."""
        return self.records.get(name) if self.trained else None

    def ours(self, key: str) -> float | None:
        """The mean over full-recipe seeds (the one run's value when n = 1)."""
        values = self.values(key)
        return float(np.mean(values)) if values else None

    def values(self, key: str) -> list[float]:
        """Each full-recipe seed's ``key`` result, by ascending seed."""
        return [self.seed_cards[s]["results"][key] for s in sorted(self.seed_cards)]

    def std(self, key: str) -> float | None:
        """Sample standard deviation over seeds (None below two seeds)."""
        values = self.values(key)
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    def reference(self, key: str) -> float | None:
        return getattr(self.model.spec.reference, key)

    def history(self) -> list[dict] | None:
        return self.record("history.json")


def load_entries(runs: Path, study: str | None = None) -> list[Entry]:
    """Every zoo model of ``study`` (default: all), in catalogue order, with its records from ``runs``."""
    found = find_runs(runs)
    entries = []
    for model_id in list_models(study=study):
        model = get_model(model_id)
        by_seed = found.get(model_id, {})
        full = {seed: card for seed, (_, card) in by_seed.items() if card.get("recipe_is_original")}
        shown = min(full or by_seed, default=None)
        source, card = by_seed[shown] if shown is not None else (None, None)
        records = {name: _read_json(source / name) for name in RECORDS if source and (source / name).exists()}
        records |= {"card.json": card} if card else {}
        entries.append(Entry(model, model_stats(model), records, source, full))
    return entries


# ---------------------------------------------------------------- claims


@dataclass(frozen=True)
class Verdict:
    claim: str
    meaning: str
    notebook: str  # holds | fails | stated (its reported numbers cannot show it)
    ours: str  # holds | fails | "not trained: ..."
    margin: str = ""  # for a comparison: our difference against twice its sampling noise
    seeds: str = ""  # across seeds: "survives", "not significant", "reversed", ... with Welch's p; "" below n = 2

    @property
    def differs(self) -> bool:
        return self.notebook in ("holds", "stated") and self.ours == "fails"


def parse_claim(text: str) -> tuple[str, tuple[str, ...]]:
    """``("<", (a, b))``, ``("best", (a,))``, ``("overfits", (a,))`` or ``("fits", (a,))``."""
    parts = text.split()
    if len(parts) == 3 and parts[1] in COMPARE:
        return parts[1], (parts[0], parts[2])
    if len(parts) == 2 and parts[0] in ("best", "overfits", "fits"):
        return parts[0], (parts[1],)
    raise SpecError(f"claim '{text}': expected 'A < B' (or <=, >, >=), 'best A', 'overfits A' or 'fits A'")


def describe_claim(text: str) -> str:
    kind, ids = parse_claim(text)
    if kind in COMPARE:
        relation = ("below" if kind.startswith("<") else "above") + (" or equal to" if kind.endswith("=") else "")
        return f"{ids[0]}'s test accuracy is {relation} {ids[1]}'s"
    if kind == "best":
        return f"{ids[0]} has the study's highest test accuracy"
    word = "at least" if kind == "overfits" else "less than"
    return f"{ids[0]}'s validation loss ends {word} {OVERFIT_RATIO - 1:.0%} above its minimum"


def judge(text: str, accuracy: dict[str, float | None], histories: dict[str, list[dict] | None]) -> str:
    """'holds' or 'fails'; 'missing: ids' when a model it needs has no number; 'stated' for a curve
    claim when there are no curves at all (the notebook's curves were not recorded)."""
    kind, ids = parse_claim(text)
    if kind in ("overfits", "fits"):
        if not histories:
            return "stated"
        history = histories.get(ids[0])
        if not history:
            return f"missing: {ids[0]}"
        losses = [row["val_loss"] for row in history]
        return "holds" if (losses[-1] >= OVERFIT_RATIO * min(losses)) == (kind == "overfits") else "fails"
    needed = list(accuracy) if kind == "best" else list(ids)
    missing = [i for i in needed if accuracy.get(i) is None]
    if missing:
        return "missing: " + ", ".join(missing)
    if kind == "best":
        return "holds" if accuracy[ids[0]] == max(accuracy.values()) else "fails"  # type: ignore[type-var]
    return "holds" if COMPARE[kind](accuracy[ids[0]], accuracy[ids[1]]) else "fails"


def verdicts(info: StudyInfo, entries: list[Entry]) -> list[Verdict]:
    """Each claim of the study's conclusion, judged on the notebook's numbers and on ours."""
    theirs = {e.id: e.reference("test_accuracy") for e in entries}
    ours = {e.id: e.ours("test_accuracy") for e in entries}
    curves = {e.id: e.history() for e in entries}
    rows = []
    for claim in info.claims:
        mine = judge(claim, ours, curves)
        rows.append(Verdict(claim, describe_claim(claim), judge(claim, theirs, {}),
                            mine.replace("missing", "not trained"), _margin(claim, ours), _across_seeds(claim, entries)))
    return rows


def _across_seeds(claim: str, entries: list[Entry]) -> str:
    """The claim judged with the seed-to-seed variation: Welch's t-test for a comparison (for ``best A``: A against
    the other model with the highest mean), the share of seeds for a curve claim; "" unless every model it
    needs has at least two seeds."""
    from scipy import stats

    kind, ids = parse_claim(claim)
    by_id = {e.id: e for e in entries}
    if kind in ("overfits", "fits"):
        entry = by_id.get(ids[0])
        if entry is None or len(entry.seed_cards) < 2 or entry.source is None:
            return ""
        held = [judge(claim, {}, {ids[0]: _seed_history(entry, seed)}) == "holds" for seed in sorted(entry.seed_cards)]
        return f"holds in {sum(held)} of {len(held)} seeds"
    accuracy = {e.id: e.ours("test_accuracy") for e in entries}
    if kind == "best":
        others = [i for i in accuracy if i != ids[0] and accuracy[i] is not None]
        if not others:
            return ""
        ids = (ids[0], max(others, key=accuracy.__getitem__))  # type: ignore[arg-type]
    a, b = (by_id[i].values("test_accuracy") if i in by_id else [] for i in ids)
    if len(a) < 2 or len(b) < 2:
        return ""
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    delta = float(np.mean(a) - np.mean(b))
    claimed = delta > 0 if kind in (">", ">=", "best") else delta < 0
    if np.isnan(p):
        verdict = "untestable (no spread)"
    elif p < SIGNIFICANCE:
        verdict = "survives" if claimed else "reversed"
    else:
        verdict = "not significant"
    against = f" vs {ids[1]}" if kind == "best" else ""
    return f"{verdict}: Δ{against} {100 * delta:+.2f} pp, Welch p = {p:.3f} (n = {len(a)}, {len(b)})"


def _seed_history(entry: Entry, seed: int) -> list[dict] | None:
    """The history of one full-recipe seed of ``entry``, read beside its card."""
    path = entry.source.parent / f"seed{seed}" / "history.json" if entry.source else None
    return _read_json(path) if path is not None and path.exists() else None  # type: ignore[return-value]


def _margin(claim: str, accuracy: dict[str, float | None]) -> str:
    """'Δ +0.28 pp, 2σ 0.37 pp': is a comparison's difference (for ``best A``: A against the best other model)
    larger than test-set sampling noise?"""
    kind, ids = parse_claim(claim)
    if kind == "best" and None not in accuracy.values():  # A against the best of the others
        ids = (ids[0], max((i for i in accuracy if i != ids[0]), key=accuracy.__getitem__))  # type: ignore[arg-type]
    elif kind not in COMPARE or any(accuracy.get(i) is None for i in ids):
        return ""
    a, b = (accuracy[i] for i in ids)
    two_sigma = 2 * np.sqrt((a * (1 - a) + b * (1 - b)) / TEST_IMAGES)  # type: ignore[operator]
    noise = " (within noise)" if abs(a - b) < two_sigma else ""  # type: ignore[operator]
    against = f" vs {ids[1]}" if kind == "best" else ""
    return f"Δ{against} {100 * (a - b):+.2f} pp, 2σ {100 * two_sigma:.2f} pp{noise}"  # type: ignore[operator]


def summary(rows: list[Verdict]) -> str:
    """One sentence: do our results support the notebook's conclusion?"""
    differs = [v.meaning for v in rows if v.differs]
    pending = [v.claim for v in rows if v.ours.startswith("not trained")]
    if differs:
        noise = all("within noise" in v.margin for v in rows if v.differs)
        text = ("Our results differ from the notebook's conclusion; for us it is not so that " + "; ".join(differs)
                + (f", though {'the' if len(differs) == 1 else 'each'} difference is within the test set's sampling "
                   "noise." if noise else "."))
    else:
        text = "Our results support the notebook's conclusion" + (" so far." if pending else ".")
    tested = [v for v in rows if v.seeds]
    if tested:
        by = {word: [v.claim for v in tested if v.seeds.startswith(word)]
              for word in ("survives", "holds in", "not significant", "reversed", "untestable")}
        parts = [f"{len(by['survives'])} of {len([v for v in tested if 'Welch' in v.seeds])} comparisons survive "
                 f"(Welch p < {SIGNIFICANCE})" + (f": {', '.join(by['survives'])}" if by["survives"] else "")]
        parts += [f"{label}: {', '.join(by[word])}" for word, label in
                  (("not significant", "not significant"), ("reversed", "reversed"), ("untestable", "untestable"))
                  if by[word]]
        text += " Across seeds, " + "; ".join(parts) + "."
    return text + (f" Not yet judged ({len(pending)} claims need models not trained yet)." if pending else "")


# ---------------------------------------------------------------- figures


def hidden_kernels(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    """Each hidden Dense or Conv2D layer's kernel, in order: never BatchNorm's parameters, biases or the output."""
    layers = [layer for layer in model.layers if type(layer).__name__ in ("Dense", "Conv2D")]
    return [(layer.name, np.asarray(layer.kernel)) for layer in layers[:-1]]


def plot_kernels(model: keras.Model, title: str, path: Path) -> Path | None:
    """Violin plots of each hidden layer's trained kernel weights (None for a model without hidden layers)."""
    kernels = hidden_kernels(model)
    if not kernels:
        return None
    rng = np.random.default_rng(0)
    values = [k.ravel() if k.size <= VIOLIN_SAMPLE else rng.choice(k.ravel(), VIOLIN_SAMPLE, replace=False)
              for _, k in kernels]
    fig, ax = pyplot().subplots(figsize=(max(5.0, 1.4 * len(kernels) + 2), 3.6))
    ax.violinplot(values, showmedians=True)
    ax.set_xticks(range(1, len(kernels) + 1), [f"{name}\n{'x'.join(map(str, k.shape))}" for name, k in kernels],
                  fontsize=8)
    ax.set_ylabel("kernel weight")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path, dpi=72)


def plot_seeds(info: StudyInfo, entries: list[Entry], path: Path) -> Path:
    """A strip plot: each model's test accuracy per seed, their mean, and the notebook's number."""
    fig, ax = pyplot().subplots(figsize=(max(6.0, 0.55 * len(entries) + 2), 4.2))
    labels = {"ours, one seed": True, "mean of our seeds": True, "notebook": True}

    def label(text: str) -> str | None:
        return text if labels.pop(text, False) else None

    for x, e in enumerate(entries):
        values = e.values("test_accuracy")
        if values:
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(x + jitter, values, s=18, color="tab:blue", alpha=0.8, zorder=3, label=label("ours, one seed"))
            ax.hlines(np.mean(values), x - 0.25, x + 0.25, color="black", zorder=4, label=label("mean of our seeds"))
        if e.reference("test_accuracy") is not None:
            ax.scatter([x], [e.reference("test_accuracy")], marker="x", color="tab:red", zorder=5,
                       label=label("notebook"))
    ax.set_xticks(range(len(entries)), [e.id for e in entries], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{info.name}: test accuracy across seeds")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path, dpi=72)


def plot_depth(entries: list[Entry], path: Path) -> Path:
    """Test accuracy against the number of hidden layers, without and with Dropout+BN, ours and the notebook's."""
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    for regularised, colour in ((False, "tab:red"), (True, "tab:blue")):
        group = sorted((e for e in entries if has_layers(e.model, "dropout", "batchnorm") == regularised),
                       key=lambda e: hidden_dense_layers(e.model))
        label = "with Dropout+BN" if regularised else "without"
        depths = [hidden_dense_layers(e.model) for e in group]
        ax.plot(depths, [e.reference("test_accuracy") for e in group], "--o", color=colour, alpha=0.5,
                label=f"notebook, {label}")
        ours = [(d, e.ours("test_accuracy")) for d, e in zip(depths, group) if e.trained]
        if ours:
            ax.plot(*zip(*ours), "-o", color=colour, label=f"ours, {label}")
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(sorted({hidden_dense_layers(e.model) for e in entries}))
    ax.set_title("Test accuracy against depth")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path, dpi=72)


def plot_against_baseline(base: Entry, other: Entry, path: Path) -> Path:
    """The baseline's train, validation and test accuracy against another model's (the fashion notebook's plots)."""
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for entry, colour in ((base, "tab:green"), (other, "tab:blue")):
        history = entry.history() or []
        epochs = [row["epoch"] for row in history]
        if history:
            ax.plot(epochs, [row["accuracy"] for row in history], "-", color=colour, label=f"{entry.id} train")
            ax.plot(epochs, [row["val_accuracy"] for row in history], ":", color=colour, label=f"{entry.id} validation")
            ax.axhline(entry.ours("test_accuracy"), color=colour, linestyle="--", alpha=0.7, label=f"{entry.id} test")
        ax.axhline(entry.reference("test_accuracy"), color=colour, linestyle="-.", alpha=0.35,
                   label=f"{entry.id} test, notebook")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{base.id} vs {other.id}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.6)
    fig.tight_layout()
    return save_png(fig, path, dpi=72)


# ---------------------------------------------------------------- tables


def _num(value: float | None, fmt: str) -> Cell:
    return ("—" if value is None else format(value, fmt)), value


def _pp(value: float | None) -> Cell:
    return ("—" if value is None else f"{100 * value:+.2f} pp"), value


def _text(value: str) -> Cell:
    return value, None


@dataclass
class TableData:
    headers: list[str]
    rows: list[list[Cell]]
    numeric: list[bool]


def _table(headers: list[str], rows: list[list[Cell]]) -> TableData:
    numeric = [any(r[i][1] is not None for r in rows) for i in range(len(headers))]
    return TableData(headers, rows, numeric)


def _latency_b1(entry: Entry) -> float | None:
    record = entry.record("eval.json")
    return next((row["p50_ms"] for row in record["latency"] if row["batch_size"] == 1), None) if record else None


def _parity(entry: Entry) -> tuple[Cell, Cell]:
    """Flipped predictions (with ties, where the record counts them) and the largest probability difference."""
    record = entry.record("export.json")
    if not record:
        return _num(None, "d"), _num(None, ".1e")
    first = next(iter(record["opsets"].values()))
    ties = f" ({first['ties']} ties)" if first.get("ties") else ""
    return (f"{first['flipped']}{ties}", first["flipped"]), _num(first["max_abs_diff"], ".1e")


def _int8_delta(entry: Entry) -> Cell:
    int8 = (entry.record("export.json") or {}).get("int8")
    if int8 is None:
        return _text("—")
    if int8.get("file") is None:
        return _text("no int8 file")
    return _pp(int8["accuracy_delta"])


def _int8_speed(entry: Entry) -> Cell:
    """int8 throughput over float32 where it was exported; flagged when the int8 file is the slower one."""
    int8 = (entry.record("export.json") or {}).get("int8") or {}
    ratio = int8.get("throughput_ratio") if int8.get("file") else None
    if ratio is None:
        return _text("—")
    return f"{ratio:.2f}x{' (slower)' if ratio < 1 else ''}", ratio


def _mean_std(entry: Entry, key: str) -> Cell:
    """``0.9812`` for one seed, ``0.9812 ± 0.0007 (3)`` for several; sorted by the mean."""
    mean, std = entry.ours(key), entry.std(key)
    if mean is None or std is None:
        return _num(mean, ".4f")
    return f"{mean:.4f} ± {std:.4f} ({len(entry.seed_cards)})", mean


def _per_seed(entry: Entry, key: str) -> Cell:
    """Each seed's value, ``seed: value``, so a mean is never shown without what it averages."""
    return _text(", ".join(f"{seed}: {entry.seed_cards[seed]['results'][key]:.4f}" for seed in sorted(entry.seed_cards))
                 or "—")


def _notebook_vs_seeds(entry: Entry) -> Cell:
    """Is the notebook's test accuracy what one more seed of ours could give (the 95% prediction interval)?"""
    from scipy import stats

    values, theirs = entry.values("test_accuracy"), entry.reference("test_accuracy")
    if theirs is None or len(values) < 2:
        return _text("n < 2" if theirs is not None else "—")
    n, mean, std = len(values), float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std * (1 + 1 / n) ** 0.5
    where = "inside: seed luck" if abs(theirs - mean) <= half else "outside: a real difference"
    return _text(f"{where} ({mean:.4f} ± {half:.4f})")


def leaderboard(entries: list[Entry]) -> TableData:
    """One row per model; models without a full-recipe run show their status and no numbers."""
    rows = []
    for e in entries:
        ours, theirs = e.ours("test_accuracy"), e.reference("test_accuracy")
        flips, max_diff = _parity(e)
        rows.append([_text(e.id), _text(e.model.study), _text(e.status),
                     _num(e.stats.params_total, ","), _num(e.stats.macs, ","),
                     _mean_std(e, "test_accuracy"), _num(theirs, ".4f"),
                     _pp(None if ours is None or theirs is None else ours - theirs),
                     flips, max_diff, _num(_latency_b1(e), ".3f"), _int8_delta(e), _int8_speed(e)])
    return _table(["model", "study", "status", "params", "MACs/image", "test acc (ours, mean ± std (n))",
                   "test acc (notebook)",
                   "Δ", "ONNX flips", "ONNX max |Δp|", "ORT batch-1 p50 ms", "int8 Δ acc",
                   "int8 speed (batch 256)"], rows)


def study_table(info: StudyInfo, entries: list[Entry]) -> TableData:
    """The notebook's closing table, our numbers beside its own (cnn adds its descriptive columns)."""
    archs = [architecture(e.model) if info.name == "cnn" else {} for e in entries]
    rows = []
    for e, arch in zip(entries, archs):
        history = e.history()
        rows.append([_text(e.id), _text(e.model.spec.provenance.variable), *map(_text, arch.values()),
                     _num(history[-1]["loss"] if history else None, ".4f"),
                     _num(e.ours("test_loss"), ".4f"), _num(e.reference("test_loss"), ".4f"),
                     _num(e.ours("train_accuracy"), ".4f"), _num(e.reference("train_accuracy"), ".4f"),
                     _mean_std(e, "test_accuracy"), _num(e.reference("test_accuracy"), ".4f"),
                     _per_seed(e, "test_accuracy"), _notebook_vs_seeds(e)])
    return _table(["model", "notebook", *(archs[0] if archs else {}), "train loss (ours)", "test loss (ours)",
                   "test loss (notebook)", "train acc (ours)", "train acc (notebook)", "test acc (ours)",
                   "test acc (notebook)", "test acc by seed", "notebook vs our seeds (95% prediction interval)"], rows)


def claims_table(rows: list[Verdict]) -> TableData:
    return _table(["claim", "meaning", "notebook", "ours", "our margin (test-set noise)", "across seeds"],
                  [[_text(v.claim), _text(v.meaning), _text(v.notebook),
                    _text(v.ours + (" ✗ differs" if v.differs else "")), _text(v.margin), _text(v.seeds or "n < 2")]
                   for v in rows])


# ---------------------------------------------------------------- the report


@dataclass
class Figure:
    caption: str
    path: Path


@dataclass
class StudySection:
    info: StudyInfo
    verdicts: list[Verdict]
    table: TableData
    figures: list[Figure]
    models: list[tuple[Entry, list[Figure]]]


def _model_figures(entry: Entry, img: Path) -> list[Figure]:
    """Curves, kernel violins and confusion matrix of a full-recipe run, from whatever records it has."""
    if not entry.trained or entry.source is None:
        return []
    figures, src = [], entry.source
    if (src / "curves.png").exists():
        figures.append(Figure("loss and accuracy per epoch, train vs validation",
                              _copy(src / "curves.png", img / f"{entry.id}_curves.png")))
    kernels = img / f"{entry.id}_kernels.png"
    if (src / "model.keras").exists():
        from .keras_runtime import load_keras  # TensorFlow, only to draw a checkpoint's kernels

        drawn = plot_kernels(load_keras(src / "model.keras"), f"{entry.id}: hidden-layer kernels", kernels)
    else:
        drawn = _copy(src / "kernels.png", kernels) if (src / "kernels.png").exists() else None
    if drawn:
        figures.append(Figure(f"trained kernel weights of each hidden layer (violins of up to {VIOLIN_SAMPLE:,} "
                              "values per layer)", drawn))
    record = entry.record("eval.json")
    if record:
        path = img / f"{entry.id}_confusion.png"
        plot_confusion(record["confusion_matrix"], list(data.get_spec(record["dataset"]).class_names),
                       f"{entry.id}: confusion matrix (ONNX, test set, accuracy {record['accuracy']:.4f})", path)
        figures.append(Figure("confusion matrix of the ONNX file on the test set (rows: true class)", path))
    return figures


def _copy(src: Path, dest: Path) -> Path:
    with atomic_path(dest, suffix=".png") as tmp:
        tmp.write_bytes(src.read_bytes())
    return dest


def _study_figures(info: StudyInfo, entries: list[Entry], img: Path) -> list[Figure]:
    figures = [Figure("test accuracy of each seed (dots), their mean (bar) and the notebook's single run (cross)",
                      plot_seeds(info, entries, img / f"{info.name}_seeds.png"))]
    if info.name == "depth":
        return figures + [Figure("test accuracy against the number of hidden layers (dashed: the notebook's numbers)",
                                 plot_depth(entries, img / "depth_accuracy.png"))]
    if info.baseline:
        base = next(e for e in entries if e.id == info.baseline)
        return figures + [Figure(f"{base.id} vs {e.id}: train (solid), validation (dotted), test (dashed) accuracy; "
                       "dash-dot: the notebook's test accuracy",
                       plot_against_baseline(base, e, img / f"{info.name}_{base.id}_vs_{e.id}.png"))
                for e in entries if e is not base]
    return figures


def build_report(runs: Path, out: Path, study: str | None = None) -> Path:
    """Write ``out/index.html``, ``out/README.md`` and ``out/img/``; return the HTML page's path."""
    if study is not None and study not in STUDIES:
        raise MnistZooError(f"unknown study '{study}'; choose one of: {', '.join(STUDIES)}")
    out = output_dir(Path(out), "--out")
    entries = load_entries(runs, study)
    if not any(e.trained for e in entries):
        raise MnistZooError(f"{runs}: no run trained with its full recipe{f' in study {study}' if study else ''}; "
                            "train one with `mnistzoo train ID`, or point --runs at results/")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        try:
            _write_report(entries, study, stage)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # a record lacks a field
            raise InvalidInput(f"{runs}: a run record lacks what the report needs ({type(exc).__name__}: "
                               f"{literal(exc)}); rebuild the run's records (re-export, re-evaluate) or remove "
                               "the run, then report again") from None
        _move_into(stage, out, ("img", "index.html", "README.md"))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out / "index.html"


def _move_into(stage: Path, out: Path, names: tuple[str, ...]) -> None:
    """Move a finished report's files from ``stage`` into ``out``, replacing an older report's, keeping the rest."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        target, old = out / name, stage / f".old-{name}"
        if target.is_dir():
            os.replace(target, old)
        os.replace(stage / name, target)


def _write_report(entries: list[Entry], study: str | None, out: Path) -> None:
    img = out / "img"
    sections = []
    for name in [study] if study else STUDIES:
        info = study_info(name)
        group = [e for e in entries if e.model.study == name]
        sections.append(StudySection(info, verdicts(info, group), study_table(info, group),
                                     _study_figures(info, group, img),
                                     [(e, _model_figures(e, img)) for e in group]))
    board = leaderboard(entries)
    env = _environment(entries)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = out / "index.html"
    with atomic_path(page) as tmp:
        tmp.write_text(render_html(sections, board, env, when), encoding="utf-8")
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(render_markdown(sections, board, env, when, out), encoding="utf-8")


def _environment(entries: list[Entry]) -> str:
    """The machines and library versions behind the numbers, each once."""
    seen: list[str] = []
    for e in entries:
        if e.trained:
            env = e.card["environment"]  # type: ignore[index]
            gpu = f", GPU {', '.join(env['gpu'])}" if env["gpu"] else ""
            text = (f"{env['cpu']} ({env['cores']} cores{gpu}), TensorFlow {env['tensorflow']}, "
                    f"onnxruntime {env['onnxruntime']}")
            seen += [text] if text not in seen else []
    return "; ".join(seen)


# ---------------------------------------------------------------- rendering

_CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}table.sortable td{white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f3f7}table.sortable th{cursor:pointer}table.sortable th:after{content:" ⇅";color:#999}
tr.untrained td{color:#888;background:#fafafa}.differs{background:#fde8e8}.holds{color:#176d2c}
blockquote{border-left:4px solid #aac;margin:.5em 0;padding:.2em 1em;color:#444;background:#f7f7fb}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top;max-width:100%}
.scroll{overflow-x:auto}figcaption{font-size:12px;color:#555;max-width:560px}
img{max-width:100%}.model{border-top:1px solid #ddd;padding-top:.5em}pre{font-size:11px;background:#f6f6f6;
padding:.5em;overflow:auto;max-height:20em}.verdict{font-weight:600}
"""

_SORT_JS = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const up = th.dataset.dir !== "asc"; th.dataset.dir = up ? "asc" : "desc";
  const key = row => {
    const c = row.cells[col];
    return "v" in c.dataset ? (c.dataset.v === "" ? null : Number(c.dataset.v)) : c.textContent;
  };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
  });
  rows.forEach(r => body.appendChild(r));
}));
"""


def _html_table(table: TableData, css: str = "", row_class=lambda _row: "") -> str:  # noqa: ANN001
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = []
        for (text, value), numeric in zip(row, table.numeric):
            attrs = f' class="n" data-v="{"" if value is None else value}"' if numeric else ""
            cells.append(f"<td{attrs}>{html.escape(text)}</td>")
        body.append(f'<tr class="{row_class(row)}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _html_figure(figure: Figure) -> str:
    data = base64.b64encode(figure.path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(figure.caption)}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")


def render_html(sections: list[StudySection], board: TableData, env: str, when: str) -> str:
    """The whole report as one self-contained page."""
    trained = sum(row[2][0] == "full recipe" for row in board.rows)
    parts = [f"<h1>mnistzoo report</h1><p>{trained} of {len(board.rows)} models trained with their full recipe. "
             f"Generated {when}. Measured on: {html.escape(env)}.</p>",
             "<h2 id='leaderboard'>Leaderboard</h2><p>Click a column to sort. Test accuracy is evaluated once, "
             "after the last epoch; ONNX figures compare the exported file with the Keras checkpoint on the whole "
             "test set.</p>",
             _html_table(board, "sortable", lambda row: "untrained" if row[2][0] != "full recipe" else "")]
    for s in sections:
        parts.append(f"<h2 id='{s.info.name}'>Study {s.info.name}: {html.escape(s.info.title)}</h2>"
                     f"<p>Notebook: <em>{html.escape(s.info.notebook_title)}</em> ({s.info.notebook}). "
                     f"Its analyses: {html.escape(s.info.analyses)}</p>"
                     f"<blockquote>{html.escape(s.info.conclusion)}</blockquote>"
                     f"<p class='verdict'>{html.escape(summary(s.verdicts))}</p>"
                     + _html_table(claims_table(s.verdicts), "claims",
                                   lambda row: "differs" if "differs" in row[3][0] else "")
                     + _html_table(s.table, "sortable")
                     + "".join(_html_figure(f) for f in s.figures))
        for entry, figures in s.models:
            card = html.escape(json.dumps(entry.card, indent=1)) if entry.trained else ""
            parts.append(f"<div class='model' id='{entry.id}'><h3>{entry.id} <small>({entry.status})</small></h3>"
                         + ("".join(_html_figure(f) for f in figures)
                            + f"<details><summary>card.json</summary><pre>{card}</pre></details>"
                            if entry.trained else f"<p>Not trained with its full recipe yet: "
                                                  f"<code>mnistzoo train {entry.id}</code>.</p>") + "</div>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>mnistzoo report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}<script>{_SORT_JS}</script></body></html>")


def _md_table(table: TableData) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [line(table.headers), "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"]
    lines += [line([text for text, _ in row]) for row in table.rows]
    return "\n".join(lines)


def render_markdown(sections: list[StudySection], board: TableData, env: str, when: str, out: Path) -> str:
    """A Markdown summary: the leaderboard, and per study its conclusion, claims, table and figures."""
    trained = sum(row[2][0] == "full recipe" for row in board.rows)
    parts = [f"# mnistzoo report\n\n{trained} of {len(board.rows)} models trained with their full recipe. "
             f"Generated {when}. Measured on: {env}. The full page with every model's curves, kernel violins, "
             "confusion matrix and card: [index.html](index.html).\n\n## Leaderboard\n\n" + _md_table(board)]
    for s in sections:
        figures = "\n\n".join(f"![{f.caption}]({f.path.relative_to(out).as_posix()})" for f in s.figures)
        parts.append(f"## Study {s.info.name}: {s.info.title}\n\n> {s.info.conclusion}\n\n"
                     f"**{summary(s.verdicts)}**\n\n{_md_table(claims_table(s.verdicts))}\n\n"
                     f"{_md_table(s.table)}\n\n{figures}".rstrip())
    return "\n\n".join(parts) + "\n"
