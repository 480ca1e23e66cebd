"""`mnistzoo report`: claims judged on both sets of numbers, kernels indexed correctly, untrained models
marked, errors, the committed docs/, and the page rendered in headless Chromium."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from browser import chromium, needs_browser
from cli_helpers import assert_one_line_error, run_cli
from mnistzoo.report import build_report, hidden_kernels, judge, parse_claim, plot_kernels, verdicts
from mnistzoo.zoo import get_model, list_models
from mnistzoo.errors import SpecError
from mnistzoo.zoo.specs import STUDIES, study_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS, DOCS = ROOT / "results", ROOT / "docs"


def _history(val_losses: list[float]) -> list[dict]:
    return [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(val_losses)]


def test_judge_comparisons_best_and_curves() -> None:
    acc = {"a": 0.98, "b": 0.97, "c": None}
    assert judge("a > b", acc, {}) == "holds" and judge("a <= b", acc, {}) == "fails"
    assert judge("a > c", acc, {}) == "missing: c"
    assert judge("best a", {"a": 0.98, "b": 0.97}, {}) == "holds"
    assert judge("best b", {"a": 0.98, "b": 0.97}, {}) == "fails"
    assert judge("best a", acc, {}) == "missing: c"  # best needs every model of the study
    curves = {"up": _history([0.5, 0.1, 0.2]), "flat": _history([0.5, 0.1, 0.11]), "none": None}
    assert judge("overfits up", acc, curves) == "holds" and judge("fits up", acc, curves) == "fails"
    assert judge("overfits flat", acc, curves) == "fails" and judge("fits flat", acc, curves) == "holds"
    assert judge("fits none", acc, curves) == "missing: none"
    assert judge("fits up", acc, {}) == "stated"  # no curves at all: the notebook's were not recorded


@pytest.mark.parametrize("bad", ["a << b", "best", "worst a", "a > b > c"])
def test_malformed_claims_are_refused(bad: str) -> None:
    with pytest.raises(SpecError, match="expected 'A < B'"):
        parse_claim(bad)


@pytest.mark.parametrize("study", STUDIES)
def test_each_conclusion_holds_on_the_notebooks_own_numbers(study: str) -> None:
    """The claims encode what the notebook concluded, so its own reported numbers must bear them out."""
    info = study_info(study)
    ids = set(list_models(study=study))
    assert info.claims and all(set(parse_claim(c)[1]) <= ids for c in info.claims)
    from mnistzoo.report import Entry

    entries = [Entry(get_model(i), None, {}, None, {}) for i in ids]  # type: ignore[arg-type]
    assert {v.notebook for v in verdicts(info, entries)} <= {"holds", "stated"}
    assert all(v.ours.startswith("not trained") for v in verdicts(info, entries))


def test_summary_says_where_our_conclusion_differs() -> None:
    from mnistzoo.report import Entry, summary

    def entry(model_id: str, accuracy: float | None) -> Entry:
        card = {"recipe_is_original": True, "results": {"test_accuracy": accuracy}}
        records = {"card.json": card} if accuracy else {}
        return Entry(get_model(model_id), None, records, None, {0: card} if accuracy else {})  # type: ignore[arg-type]

    info = study_info("fashion")  # the notebook: each other model tests below the vanilla fashion_mlp2
    rows = verdicts(info, [entry("fashion_mlp2", 0.85), entry("fashion_mlp3_dropout", 0.88),
                           entry("fashion_mlp2_bn", 0.84), entry("fashion_mlp2_bn_dropout", None)])
    assert [(v.notebook, v.ours, v.differs) for v in rows] == [
        ("holds", "fails", True), ("holds", "holds", False), ("holds", "not trained: fashion_mlp2_bn_dropout", False)]
    assert rows[0].margin == "Δ +3.00 pp, 2σ 0.97 pp"  # 2 * sqrt((.88 * .12 + .85 * .15) / 10000)
    text = summary(rows)
    assert text.startswith("Our results differ from the notebook's conclusion; for us it is not so that "
                           "fashion_mlp3_dropout's test accuracy is below fashion_mlp2's.")
    assert "Not yet judged (1 claims" in text
    best = verdicts(study_info("init"), [entry("softmax_sgd", 0.90), entry("mlp2_he", 0.981),
                                         entry("mlp3_he_bn_dropout", 0.983), entry("mlp5_he_bn_dropout", 0.982)])
    assert best[0].ours == "fails" and best[0].margin.startswith("Δ vs mlp3_he_bn_dropout -0.10 pp")
    assert best[0].margin.endswith("(within noise)")


def entry(model_id: str, *accuracies: float):  # noqa: ANN201 - a report Entry, imported late like the report
    """A report entry with only the full-recipe seeds' test accuracies."""
    from mnistzoo.report import Entry

    cards = {seed: {"recipe_is_original": True, "results": {"test_accuracy": a}} for seed, a in enumerate(accuracies)}
    return Entry(get_model(model_id), None, {"card.json": cards[0]}, None, cards)  # type: ignore[arg-type]


def test_claims_are_judged_across_seeds_with_welchs_t_test() -> None:
    from scipy import stats

    from mnistzoo.report import summary

    info = study_info("fashion")  # claims: fashion_mlp3_dropout < fashion_mlp2, fashion_mlp2_bn < fashion_mlp2, ...
    base, clear, overlapping = [0.880, 0.882, 0.881], [0.850, 0.852, 0.851], [0.879, 0.884, 0.880]
    rows = verdicts(info, [entry("fashion_mlp2", *base), entry("fashion_mlp3_dropout", *clear),
                           entry("fashion_mlp2_bn", *overlapping), entry("fashion_mlp2_bn_dropout", 0.90)])
    p_clear = stats.ttest_ind(clear, base, equal_var=False).pvalue
    assert rows[0].seeds == f"survives: Δ -3.00 pp, Welch p = {p_clear:.3f} (n = 3, 3)" and p_clear < 0.05
    assert rows[1].seeds.startswith("not significant: Δ +0.00 pp")
    assert rows[2].seeds == ""  # one seed: not tested across seeds
    text = summary(rows)
    assert "Across seeds, 1 of 2 comparisons survive (Welch p < 0.05): fashion_mlp3_dropout < fashion_mlp2" in text
    assert "not significant: fashion_mlp2_bn < fashion_mlp2" in text
    reversed_rows = verdicts(info, [entry("fashion_mlp2", *clear), entry("fashion_mlp3_dropout", *base)])
    assert reversed_rows[0].seeds.startswith("reversed: Δ +3.00 pp")
    assert entry("fashion_mlp2", *base).std("test_accuracy") == pytest.approx(0.001)


def test_a_gap_to_the_notebook_is_set_against_one_more_seed_of_ours() -> None:
    """fashion_mlp2_bn's notebook run scored 0.8670; the 95% prediction interval for one more of our runs decides."""
    from mnistzoo.report import _notebook_vs_seeds

    tight, spread = entry("fashion_mlp2_bn", 0.850, 0.852, 0.851), entry("fashion_mlp2_bn", 0.860, 0.870, 0.865)
    assert _notebook_vs_seeds(tight)[0] == "outside: a real difference (0.8510 ± 0.0050)"  # t(0.975, 2) = 4.303
    assert _notebook_vs_seeds(spread)[0] == "inside: seed luck (0.8650 ± 0.0248)"
    assert _notebook_vs_seeds(entry("fashion_mlp2_bn", 0.850))[0] == "n < 2"


def test_violins_show_hidden_kernels_not_batchnorm_parameters(tmp_path: Path) -> None:
    model = get_model("mlp5_dropout_bn").build()
    kernels = hidden_kernels(model)
    assert [k.shape for _, k in kernels] == [(784, 2048), (2048, 1024), (1024, 512), (512, 256), (256, 128)]
    cnn = hidden_kernels(get_model("cnn2_k3_reg").build())
    assert [k.shape for _, k in cnn] == [(3, 3, 1, 32), (3, 3, 32, 64), (1600, 128), (128, 64)]
    assert plot_kernels(model, "t", tmp_path / "k.png") == tmp_path / "k.png"
    assert (tmp_path / "k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_kernels(get_model("softmax_sgd").build(), "t", tmp_path / "s.png") is None  # no hidden layer


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the committed results/."""
    out = tmp_path_factory.mktemp("report")
    build_report(RESULTS, out)
    return out


def _results() -> dict[str, dict]:
    """Each model's ``summary.json`` over its full-recipe seeds."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*/summary.json"))}


def _accuracy_cell(summary: dict) -> str:
    acc = summary["test_accuracy"]
    return f"{acc['mean']:.4f}" if summary["n"] == 1 else f"{acc['mean']:.4f} ± {acc['std']:.4f} ({summary['n']})"


def _int8_speed_cell(model_id: str) -> str:
    """What the leaderboard says of the shown run's int8 file: its speed-up, flagged when it is slower."""
    shown = min((RESULTS / model_id).glob("seed*/card.json"), key=lambda p: int(p.parent.name[4:])).parent
    int8 = json.loads((shown / "export.json").read_text()).get("int8") or {}
    ratio = int8.get("throughput_ratio") if int8.get("file") else None
    return "—" if ratio is None else f"{ratio:.2f}x" + (" (slower)" if ratio < 1 else "")


def _leaderboard(markdown: str) -> dict[str, list[str]]:
    section = markdown.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    rows = [ln.strip("|").split(" | ") for ln in section.splitlines() if ln.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r] for r in rows[1:]}


@pytest.mark.parametrize("where", ["built", "committed"])
def test_leaderboard_has_every_model_and_marks_the_untrained(where: str, report: Path) -> None:
    markdown = ((report if where == "built" else DOCS) / "README.md").read_text()
    board, cards = _leaderboard(markdown), _results()
    assert set(board) == set(list_models())
    for model_id, row in board.items():
        if model_id in cards:
            assert row[2] == "full recipe" and row[5] == _accuracy_cell(cards[model_id])
            assert row[12] == _int8_speed_cell(model_id)
        else:
            assert row[2] == "not trained" and row[5] == "—" and row[7] == "—"


def test_page_is_self_contained(report: Path) -> None:
    page = (report / "index.html").read_text()
    assert "src=\"http" not in page and "href=\"http" not in page and "<link" not in page
    assert page.count("<img ") == len(list((report / "img").glob("*.png")))
    assert page.count("<p class='verdict'>") == len(STUDIES)


def test_partial_runs_are_listed_as_such(runs: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "runs"
    shutil.copytree(RESULTS / "mlp3", mixed / "mlp3")
    shutil.copytree(runs / "mlp3_dropout_bn@1", mixed / "mlp3_dropout_bn@1")
    build_report(mixed, tmp_path / "out", study="depth")
    board = _leaderboard((tmp_path / "out" / "README.md").read_text())
    assert set(board) == set(list_models(study="depth"))
    assert board["mlp3"][2] == "full recipe"
    assert board["mlp3_dropout_bn"][2] == "partial run (epochs=1, limit=3000)" and board["mlp3_dropout_bn"][5] == "—"
    images = sorted(p.name for p in (tmp_path / "out" / "img").glob("*.png"))
    assert images == ["depth_accuracy.png", "depth_seeds.png", "mlp3_confusion.png", "mlp3_curves.png",
                      "mlp3_kernels.png"]


def test_report_errors(runs: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("report", "--study", "nope", "--runs", str(RESULTS), "--out", str(tmp_path)),
                          2, "unknown study 'nope'")
    assert_one_line_error(run_cli("report", "--runs", str(tmp_path / "missing")), 2, "no such directory")
    assert_one_line_error(run_cli("report", "--runs", str(runs), "--out", str(tmp_path / "o")),
                          2, "no run trained with its full recipe")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(run_cli("report", "--runs", str(RESULTS), "--study", "init", "--out", str(blocker)),
                          2, "is a file, not a directory")
    broken = tmp_path / "broken"
    shutil.copytree(RESULTS / "mlp2", broken / "mlp2")
    (broken / "mlp2" / "seed0" / "eval.json").write_text("{not json")
    assert_one_line_error(run_cli("report", "--runs", str(broken), "--out", str(tmp_path / "b")),
                          2, "eval.json: unreadable or not JSON")
    assert not (tmp_path / "b" / "index.html").exists()


@needs_browser
def test_page_renders_in_headless_chromium(report: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        driver.get((report / "index.html").as_uri())
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == len(list((report / "img").glob("*.png")))
        broken = driver.execute_script("return Array.from(document.images).filter(i => !i.complete || "
                                       "i.naturalWidth === 0).map(i => i.alt)")
        assert broken == []
        board = driver.find_element(By.CSS_SELECTOR, "table.sortable")
        assert len(board.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(list_models())
        header = next(h for h in board.find_elements(By.TAG_NAME, "th") if h.text.startswith("test acc (ours"))
        column = [h.text for h in board.find_elements(By.TAG_NAME, "th")].index(header.text)
        for _ in range(2):  # ascending, then descending: the trained models in order, the untrained last
            header.click()
            values = [float(v) for v in driver.execute_script(
                "return Array.from(arguments[0].tBodies[0].rows).map(r => r.cells[arguments[1]].dataset.v)"
                ".filter(v => v !== '')", board, column)]
            assert values in (sorted(values), sorted(values, reverse=True)) and len(values) == len(_results())
        assert values == sorted(values, reverse=True)
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"), dtype=float)
        assert shot.std() > 10  # text and tables, not a blank page
