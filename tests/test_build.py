"""``mnistzoo build``: every (model, seed) a job, on the local engine and on a real local Ray instance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cli_helpers import assert_one_line_error, run_cli
from homes import using_home
from mnistzoo import build
from mnistzoo.errors import InvalidInput
from mnistzoo.runs import migrate, run_dir, seeds_of

MODELS, SEEDS = ["softmax_sgd", "mlp3"], [0, 1]
QUICK = {"epochs": 1, "limit": 1500, "timed": False}  # no test here asserts on speed: int8 and latency untimed
TIMING = {"wall_seconds", "images_per_second", "model_sha256", "environment"}  # differ between any two runs


def comparable(run: Path) -> dict:
    """A run's card and history without what timing, the machine and the zip container's dates change."""
    card = json.loads((run / "card.json").read_text())
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in json.loads((run / "history.json").read_text())]
    return {"card": {k: v for k, v in card.items() if k not in TIMING}, "history": history}


@pytest.mark.parametrize(("text", "seeds"), [("0", [0]), ("0,1,2", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]),
                                             ("3, 0-1,1", [0, 1, 3]), ("4294967295", [4294967295])])
def test_seeds_parse(text: str, seeds: list[int]) -> None:
    assert build.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "1-0", "-1", "0-", "1,,2", "٣", "0-5000", "4294967296"])
def test_bad_seeds_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="--seed"):
        build.parse_seeds(text)


@pytest.mark.parametrize(("args", "fragments"), [
    (["mlp2", "--engine", "spark"], ("unknown --engine 'spark'", "local or ray")),
    (["mlp2", "--address", "auto"], ("--address joins a Ray cluster", "--engine ray")),
    (["mlp2", "--gpus-per-job", "0.5"], ("--gpus-per-job schedules Ray tasks",)),
    (["mlp2", "--gpus-per-job", "-1", "--engine", "ray"], ("--gpus-per-job must be a number",)),
    (["mlp2", "--seeds", "2-1"], ("--seeds takes seeds like 0,1,2",)),
    (["mlp2", "--cpus-per-job", "0"], ("--cpus-per-job",)),
    ([], ("name the models to build", "--all")),
    (["mlp9"], ("unknown model 'mlp9'",)),
    (["mlp2", "--study", "nope"], ("unknown study 'nope'",)),
    (["mlp2", "--engine", "ray", "--address", "127.0.0.1:1"], ("cannot reach a Ray cluster at '127.0.0.1:1'",)),
    (["mlp2", "--engine", "ray", "--address", "nowhere"], ("is not HOST:PORT",)),
])
def test_bad_build_options_are_one_line_before_any_work(args: list[str], fragments: tuple[str, ...],
                                                         tmp_path: Path) -> None:
    assert_one_line_error(run_cli("build", *args, "--runs", str(tmp_path / "runs"), "--quiet"), 2, *fragments)
    assert not (tmp_path / "runs").exists()


def test_without_ray_the_ray_engine_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "ray":
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        """))
    proc = subprocess.run([sys.executable, "-m", "mnistzoo", "build", "mlp2", "--engine", "ray"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert_one_line_error(proc, 2, "pip install 'mnistzoo[ray]'")


def test_a_job_of_n_cpus_sizes_both_tensorflow_pools_to_n() -> None:
    """As TensorFlow sizes them on an n-core machine: one inter-op thread made epochs stall (benchmarks/build.md)."""
    code = ("from mnistzoo.build import set_threads; set_threads(3); import tensorflow as tf; "
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "3"]


def test_a_run_from_before_seed_directories_moves_into_its_seed(tmp_path: Path) -> None:
    old = tmp_path / "mlp2@1"
    old.mkdir()
    (old / "state.json").write_text(json.dumps({"config": {"seed": 7}}))
    (old / "checkpoint.keras").write_bytes(b"weights")
    assert seeds_of("mlp2@1", tmp_path, finished=False) == [7]
    assert sorted(p.name for p in old.iterdir()) == ["seed7"]
    assert (run_dir("mlp2@1", 7, tmp_path) / "checkpoint.keras").read_bytes() == b"weights"
    (old / "card.json").write_text(json.dumps({"seed": 7}))  # a second old run whose seed directory exists
    with pytest.raises(InvalidInput, match="move one of them away"):
        migrate(old)


def test_the_migration_moves_only_run_files_in_real_run_directories(tmp_path: Path) -> None:
    """What it does not recognise stays where it is; a name that is not id@version, or a directory reached
    through a symbolic link, is never touched; a name read from a file never becomes a path."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "card.json").write_text(json.dumps({"seed": 3}))
    (outside / "notes.txt").write_text("mine")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "mlp2@1").symlink_to(outside)
    assert seeds_of("mlp2@1", runs) == [] and sorted(p.name for p in outside.iterdir()) == ["card.json", "notes.txt"]
    for name in ("../elsewhere", "mlp2@1/../../elsewhere", "x/y@1"):
        with pytest.raises(InvalidInput, match="does not name a run"):
            run_dir(name, 0, runs)
    migrate(outside)  # not named id@version
    assert sorted(p.name for p in outside.iterdir()) == ["card.json", "notes.txt"]
    real = runs / "mlp3@1"
    real.mkdir()
    (real / "card.json").write_text(json.dumps({"seed": 0}))
    (real / "notes.txt").write_text("mine")
    migrate(real)
    assert sorted(p.name for p in real.iterdir()) == ["notes.txt", "seed0"]


@pytest.fixture(scope="module")
def local_runs(mnist_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: 2 models x 2 seeds, quick, on the local engine (this process), results collected."""
    runs = tmp_path_factory.mktemp("local_runs")
    with using_home(mnist_home):
        outcomes = build.build(build.plan(MODELS, seeds=SEEDS, runs=runs, results=runs / "results", **QUICK))
    assert [o.state for o in outcomes] == ["done"] * 4, [o.error for o in outcomes]
    return runs


def test_local_build_writes_each_seed_and_a_second_run_does_no_work(local_runs: Path, home: Path) -> None:
    for model in MODELS:
        assert seeds_of(f"{model}@1", local_runs) == SEEDS
        for seed in SEEDS:
            run = run_dir(f"{model}@1", seed, local_runs)
            assert {"card.json", "model.onnx", "export.json", "eval.json"} <= {p.name for p in run.iterdir()}
            assert json.loads((run / "card.json").read_text())["seed"] == seed
            copied = local_runs / "results" / model / f"seed{seed}"
            assert (copied / "card.json").read_bytes() == (run / "card.json").read_bytes()
        assert not (local_runs / "results" / model / "summary.json").exists()  # quick runs are not the full recipe
    a, b = (comparable(run_dir("mlp3@1", s, local_runs)) for s in SEEDS)
    assert a["history"] != b["history"]  # the seed changes the run
    before = {p: p.stat().st_mtime_ns for p in local_runs.rglob("*") if p.is_file()}
    proc = run_cli("build", *MODELS, "--seeds", "0-1", "--epochs", "1", "--limit", "1500", "--runs", str(local_runs),
                   "--results", str(local_runs / "results"), "--untimed", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [o["state"] for o in json.loads(proc.stdout)] == ["skipped"] * 4
    assert {p: p.stat().st_mtime_ns for p in local_runs.rglob("*") if p.is_file()} == before


def test_jobs_finished_in_results_are_skipped_on_a_fresh_machine(local_runs: Path, home: Path, tmp_path: Path) -> None:
    """A clone of the repository has ``results/`` but no runs directory: its finished jobs are not trained again."""
    results = tmp_path / "results"
    shutil.copytree(local_runs / "results", results)
    (results / "mlp3" / "seed1" / "card.json").unlink()  # this one has to be built again
    outcomes = build.build(build.plan(MODELS, seeds=SEEDS, runs=tmp_path / "runs", results=results, **QUICK))
    assert [o.state for o in outcomes] == ["skipped", "skipped", "skipped", "done"], [o.error for o in outcomes]
    assert seeds_of("mlp3@1", tmp_path / "runs") == [1]
    assert (results / "mlp3" / "seed1" / "card.json").is_file()

def test_an_export_by_an_older_route_or_timing_is_redone(local_runs: Path) -> None:
    run = run_dir("mlp3@1", 0, local_runs)
    card, export = (json.loads((run / name).read_text()) for name in ("card.json", "export.json"))
    from mnistzoo.contract import CONVERSION_ROUTE as ROUTE
    from mnistzoo.runs import export_current

    assert export_current(export, card, ROUTE, timed=False)
    assert not export_current({**export, "conversion": {**export["conversion"], "route": "tf2onnx"}}, card, ROUTE,
                              timed=False)
    assert "rounds" not in export["int8"] and not export_current(export, card, ROUTE)  # a timed build times it
    assert not export_current(export, {**card, "weights_sha256": "0" * 64}, ROUTE, timed=False)  # other weights


def test_export_and_load_pretrained_pick_a_seed(local_runs: Path, home: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from mnistzoo import load_pretrained
    from mnistzoo.errors import MnistZooError
    from mnistzoo.export import export

    result = export("mlp3", runs=local_runs, seed=1, out=tmp_path / "out")
    assert result.out_dir == tmp_path / "out" / "mlp3@1-seed1"
    seed1 = json.loads((run_dir("mlp3@1", 1, local_runs) / "card.json").read_text())
    assert result.record["checkpoint_sha256"] == seed1["weights_sha256"]  # the weights it was exported from
    zoo = tmp_path / "zoo"
    shutil.copytree(local_runs / "mlp3@1", zoo / "runs" / "mlp3@1")
    monkeypatch.setenv("MNISTZOO_HOME", str(zoo))
    classifier = load_pretrained("mlp3", seed=1)
    assert classifier.source == "zoo home" and classifier.card["seed"] == 1
    assert load_pretrained("mlp3").card["seed"] == 0
    with pytest.raises(MnistZooError, match="seed 2 .*`mnistzoo build mlp3 --seeds 2`"):
        load_pretrained("mlp3", seed=2)


def test_a_failed_job_is_listed_and_the_others_finish(home: Path, tmp_path: Path) -> None:
    bad = run_dir("softmax_sgd@1", 0, tmp_path)
    bad.mkdir(parents=True)
    (bad / "state.json").write_text("{garbled")
    proc = run_cli("build", "softmax_sgd", "--seeds", "0-1", "--epochs", "1", "--limit", "500", "--runs",
                   str(tmp_path), "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    states = [(o["seed"], o["state"]) for o in json.loads(proc.stdout)]
    assert states == [(0, "failed"), (1, "done")]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("failed: softmax_sgd@1 seed 0: ") and "state.json" in lines[0]
    assert lines[-1].startswith("error: 1 of 2 jobs failed")


def test_summary_over_full_recipe_seeds(tmp_path: Path) -> None:
    for seed, accuracy in ((0, 0.98), (1, 0.96), (2, 0.97), (3, 0.5)):
        card = {"id": "mlp2", "name": "mlp2@1", "seed": seed, "recipe_is_original": seed != 3,
                "results": {"test_accuracy": accuracy, "test_loss": 1 - accuracy}}
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "card.json").write_text(json.dumps(card))
    real = json.loads((Path(__file__).parents[1] / "results" / "mlp2" / "seed0" / "card.json").read_text())
    for seed_dir in tmp_path.glob("seed*"):  # complete the cards from a real one
        card = json.loads((seed_dir / "card.json").read_text())
        (seed_dir / "card.json").write_text(json.dumps({**real, **card}))
    summary = build.write_summary(tmp_path)
    assert summary is not None and summary["seeds"] == [0, 1, 2] and summary["n"] == 3
    acc = summary["test_accuracy"]
    assert acc["mean"] == pytest.approx(0.97) and acc["std"] == pytest.approx(0.01)
    assert (acc["min"], acc["max"], acc["values"]) == (0.96, 0.98, [0.98, 0.96, 0.97])
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


# ----------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_instance(mnist_home: Path):  # noqa: ANN201 - yields the ray module
    """A real local Ray instance with 2 CPUs; its workers see the zoo home holding MNIST."""
    ray = pytest.importorskip("ray")
    with using_home(mnist_home):
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_build_gives_exactly_the_local_cards_and_histories(ray_instance, local_runs: Path, home: Path,  # noqa: ANN001
                                                               tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    workers: set[int] = set()

    def on_event(job: build.Job, kind: str, details: dict) -> None:
        events.append((job.key, kind))
        if kind == "start":
            workers.add(details["pid"])

    outcomes = build.build(build.plan(MODELS, seeds=SEEDS, engine="ray", runs=tmp_path, results=tmp_path / "results",
                                      **QUICK), on_event)
    assert [o.state for o in outcomes] == ["done"] * 4, [o.error for o in outcomes]
    assert len(workers) < 4, workers  # a worker runs job after job, importing TensorFlow once
    for model in MODELS:
        for seed in SEEDS:
            ours = run_dir(f"{model}@1", seed, tmp_path)
            assert comparable(ours) == comparable(run_dir(f"{model}@1", seed, local_runs))
            assert not (ours / "state.json").exists() and (ours / "model.onnx").is_file()
            assert (tmp_path / "results" / model / f"seed{seed}" / "eval.json").is_file()
            kinds = [k for key, k in events if key == f"{model}@1/seed{seed}"]
            assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) <= {"epoch"}, kinds
    again = build.build(build.plan(MODELS, seeds=SEEDS, engine="ray", runs=tmp_path, **QUICK))
    assert [o.state for o in again] == ["skipped"] * 4


def test_jobs_never_run_more_at_once_than_there_are_cpus(ray_instance, home: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """A task blocked in ``ray.get`` lends its CPU to the next one (which then runs beside it): jobs never wait."""
    events: list[tuple[str, str]] = []
    outcomes = build.build(build.plan(["mlp2"], seeds=[0, 1, 2], engine="ray", runs=tmp_path, epochs=3, limit=3000,
                                      timed=False),
                           lambda job, kind, details: events.append((job.key, kind)))
    assert [o.state for o in outcomes] == ["done"] * 3, [o.error for o in outcomes]
    running, most = set(), 0
    for key, kind in events:  # 2 CPUs, 1 per job
        running = running | {key} if kind == "start" else running - {key} if kind == "done" else running
        most = max(most, len(running))
    assert most == 2, events


def test_a_killed_worker_is_retried_and_gives_the_same_result(ray_instance, home: Path, tmp_path: Path) -> None:  # noqa: ANN001
    quick = {"epochs": 3, "limit": 3000, "timed": False}
    pids: dict[str, int] = {}
    killed: list[int] = []

    def kill_after_first_epoch(job: build.Job, kind: str, details: dict) -> None:
        if kind == "start":
            pids[job.key] = details["pid"]
        elif kind == "epoch" and not killed:
            killed.append(pids[job.key])
            os.kill(pids[job.key], signal.SIGKILL)

    [outcome] = build.build(build.plan(["mlp3"], engine="ray", runs=tmp_path / "ray", cpus_per_job=2, **quick),
                            kill_after_first_epoch)
    assert killed and outcome.state == "done" and outcome.attempts == 2, outcome
    [reference] = build.build(build.plan(["mlp3"], runs=tmp_path / "local", **quick))
    assert reference.state == "done"
    assert comparable(run_dir("mlp3@1", 0, tmp_path / "ray")) == comparable(run_dir("mlp3@1", 0, tmp_path / "local"))


def test_a_failing_ray_job_is_listed_with_its_error_and_the_others_finish(ray_instance, home: Path,  # noqa: ANN001
                                                                          tmp_path: Path) -> None:
    bad = run_dir("softmax_sgd@1", 0, tmp_path)
    bad.mkdir(parents=True)
    (bad / "state.json").write_text("{garbled")
    (bad / "checkpoint.keras").write_bytes(b"not a checkpoint")
    outcomes = build.build(build.plan(["softmax_sgd"], seeds=[0, 1], engine="ray", runs=tmp_path, epochs=1, limit=500,
                                      timed=False))
    assert [(o.state, o.attempts) for o in outcomes] == [("failed", 1), ("done", 1)], outcomes
    assert "state.json" in outcomes[0].error and "\n" not in outcomes[0].error, outcomes[0].error
