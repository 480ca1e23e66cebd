"""The trainer on a slice of real MNIST: files written, determinism, kill-and-resume, errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import MNISTZOO, assert_one_line_error, run_cli
from mnistzoo import data
from mnistzoo._io import sha256_file


def test_one_epoch_run_writes_every_file(home: Path, tmp_path: Path) -> None:
    from mnistzoo.train import train

    result = train("mlp3_dropout_bn", epochs=1, limit=2000, out=tmp_path)
    run = tmp_path / "mlp3_dropout_bn@1" / "seed0"
    assert result.run_dir == run
    assert sorted(p.name for p in run.iterdir()) == ["card.json", "curves.png", "history.json", "model.keras",
                                                     "model.weights.h5"]
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and set(history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert 0.5 < history[0]["val_accuracy"] <= 1 and history[0]["loss"] > 0
    card = json.loads((run / "card.json").read_text())
    assert card["recipe"]["epochs"] == 1 and card["overrides"] == {"epochs": 1, "limit": 2000}
    assert card["recipe_is_original"] is False and card["train_images"] == 2000
    assert card["dataset"]["sha256"]["x_test"] == data.get_spec("mnist").sha256["x_test"]
    assert card["results"]["test_accuracy"] == pytest.approx(history[0]["val_accuracy"], abs=1e-6)
    assert card["delta"]["test_accuracy"] == pytest.approx(card["results"]["test_accuracy"] - 0.9844)
    assert card["delta"]["train_accuracy"] is None and "test set" in card["validation_note"]
    assert card["environment"]["cores"] >= 1 and card["environment"]["tensorflow"]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A finished run is not retrained.
    assert train("mlp3_dropout_bn", epochs=1, limit=2000, out=tmp_path).skipped


def test_the_weights_file_is_the_model_without_optimiser_state(home: Path, tmp_path: Path) -> None:
    """``model.weights.h5`` holds the trained weights alone, loads into the zoo's class with the same answers, is
    derived once for a run trained before weights were kept, and a damaged one is refused in one line."""
    import keras

    from mnistzoo.checkpoints import keep_weights, load_trained
    from mnistzoo.errors import InvalidInput
    from mnistzoo.train import train

    run = train("mlp3_dropout_bn", epochs=1, limit=1000, out=tmp_path).run_dir
    card = json.loads((run / "card.json").read_text())
    assert card["weights_sha256"] == sha256_file(run / "model.weights.h5")
    whole = keras.models.load_model(run / "model.keras")
    model = load_trained(run, card, "retrain")
    x = data.load("mnist").x_test[:64].astype(np.float32)
    np.testing.assert_array_equal(model(x, training=False), whole(x, training=False))
    assert (run / "model.weights.h5").stat().st_size < (run / "model.keras").stat().st_size / 2  # no Adam moments

    (run / "model.weights.h5").unlink()  # a run from before weights were kept
    card.pop("weights_sha256")
    (run / "card.json").write_text(json.dumps(card))
    upgraded = keep_weights(run)
    assert upgraded["weights_sha256"] == sha256_file(run / "model.weights.h5")
    assert json.loads((run / "card.json").read_text())["weights_sha256"] == upgraded["weights_sha256"]
    assert keep_weights(run) == upgraded  # once only

    (run / "model.weights.h5").write_bytes((run / "model.weights.h5").read_bytes()[:-64])
    with pytest.raises(InvalidInput, match=r"model.weights.h5: corrupt weights file, it does not match the SHA-256"):
        load_trained(run, upgraded, "retrain it")


def test_same_seed_same_history_other_seed_differs(home: Path, tmp_path: Path) -> None:
    from mnistzoo.train import train

    runs = [train("mlp2_relu_dropout_adam", epochs=2, limit=1500, seed=s, out=tmp_path / str(i)).history
            for i, s in enumerate((7, 7, 8))]
    losses = [[h["loss"] for h in run] for run in runs]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


class _Stop(Exception):
    pass


def test_mixed_bfloat16_resumes_exactly_and_saves_a_float32_model(home: Path, tmp_path: Path) -> None:
    import keras

    from mnistzoo.train import train

    def stop_after_first(row: dict) -> None:
        raise _Stop

    args = {"epochs": 2, "limit": 1500, "precision": "mixed_bfloat16"}
    with pytest.raises(_Stop):
        train("mlp3_dropout_bn", out=tmp_path / "killed", on_epoch=stop_after_first, **args)
    resumed = train("mlp3_dropout_bn", out=tmp_path / "killed", **args)
    straight = train("mlp3_dropout_bn", out=tmp_path / "straight", **args)
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == len(straight.history) == 2
    for a, b in zip(resumed.history, straight.history):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7)
    card = straight.card
    assert card["precision"] == "mixed_bfloat16" and card["overrides"]["precision"] == "mixed_bfloat16"
    assert card["recipe_is_original"] is False
    model = keras.models.load_model(straight.run_dir / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    x, y = data.load("mnist").x_test, data.load("mnist").y_test
    accuracy = float((model.predict(x, batch_size=1024, verbose=0).argmax(1) == y).mean())
    assert accuracy == pytest.approx(card["results"]["test_accuracy"], abs=1e-4) and accuracy > 0.5


def _train_cmd(out: Path) -> list[str]:
    return [str(MNISTZOO), "train", "mlp3_dropout_bn", "--epochs", "3", "--limit", "6000", "--out", str(out), "--quiet"]


def test_sigkill_during_epoch_two_then_resume_matches_uninterrupted(home: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    state = killed / "mlp3_dropout_bn@1" / "seed0" / "state.json"
    proc = subprocess.Popen(_train_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (state.exists() and len(json.loads(state.read_text())["history"]) == 1):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before epoch 1 was saved"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(json.loads(state.read_text())["history"]) == 1  # killed during epoch 2

    assert subprocess.run(_train_cmd(killed), capture_output=True).returncode == 0
    straight = tmp_path / "straight"
    assert subprocess.run(_train_cmd(straight), capture_output=True).returncode == 0
    resumed_h = json.loads((killed / "mlp3_dropout_bn@1" / "seed0" / "history.json").read_text())
    straight_h = json.loads((straight / "mlp3_dropout_bn@1" / "seed0" / "history.json").read_text())
    assert len(resumed_h) == len(straight_h) == 3
    for a, b in zip(resumed_h, straight_h):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7)


def test_corrupt_checkpoint_on_resume_is_refused(home: Path, tmp_path: Path) -> None:
    run = tmp_path / "mlp3@1"
    run.mkdir()
    config = {"model": "mlp3@1", "recipe": {"dataset": "mnist", "optimizer": "adam", "learning_rate": 0.001,
              "loss": "categorical_crossentropy", "batch_size": 128, "epochs": 2, "validation": "test",
              "validation_images": None}, "seed": 0, "limit": 500, "precision": "float32"}
    (run / "state.json").write_text(json.dumps({"config": config, "history": [], "checkpoint_sha256": "0"}))
    (run / "checkpoint.keras").write_bytes(b"not a keras file")
    proc = run_cli("train", "mlp3", "--epochs", "2", "--limit", "500", "--out", str(tmp_path))
    assert_one_line_error(proc, 2, "corrupt checkpoint", "--restart")
    assert run_cli("train", "mlp3", "--epochs", "1", "--limit", "500", "--out", str(tmp_path),
                   "--restart", "--quiet").returncode == 0


@pytest.mark.parametrize(("args", "fragment"), [
    (["nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["mlp2", "--epochs", "0"], "--epochs must be a positive integer"),
    (["mlp2", "--batch-size", "-4"], "--batch-size must be a positive integer"),
    (["mlp2", "--limit", "0"], "--limit must be a positive integer"),
    (["mlp2", "--precision", "float16"], "unknown --precision 'float16'"),
    (["--study", "deep"], "unknown study 'deep'"),
    ([], "name at least one model id"),
])
def test_bad_arguments(args: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli("train", *args), 2, fragment)


def test_unwritable_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run_cli("train", "mlp2", "--out", str(blocker)), 2, "is a file, not a directory")


def test_disk_full_while_checkpointing_keeps_previous_checkpoint(home: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import keras

    from mnistzoo.errors import MnistZooError
    from mnistzoo.train import train

    real_save, calls = keras.Model.save, []

    def save_until_disk_fills(model: keras.Model, path: str, *args, **kwargs) -> None:
        calls.append(path)
        if len(calls) == 2:  # the epoch-2 checkpoint: half a file, then no space left
            Path(path).write_bytes(b"PK\x03\x04" + bytes(1000))
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_until_disk_fills)
    with pytest.raises(MnistZooError, match="No space left on device.*free disk space"):
        train("mlp3", epochs=3, limit=600, out=tmp_path)
    run = tmp_path / "mlp3@1" / "seed0"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.keras", "state.json"]
    state = json.loads((run / "state.json").read_text())
    assert len(state["history"]) == 1
    from mnistzoo._io import sha256_file

    assert sha256_file(run / "checkpoint.keras") == state["checkpoint_sha256"]
    keras.models.load_model(run / "checkpoint.keras")  # the epoch-1 checkpoint is whole

    monkeypatch.setattr(keras.Model, "save", real_save)
    result = train("mlp3", epochs=3, limit=600, out=tmp_path)
    assert result.resumed_from_epoch == 1 and len(result.history) == 3


def test_progress_bar_and_summary_table(home: Path, tmp_path: Path) -> None:
    proc = run_cli("train", "mlp3", "softmax_sgd", "--epochs", "1", "--limit", "500", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "mlp3 epoch 1: loss" in proc.stderr and "epoch 1/1" in proc.stderr and "4/4" in proc.stderr
    assert "training summary" in proc.stdout and "mlp3@1" in proc.stdout and "softmax_sgd@1" in proc.stdout


def test_package_level_train_is_callable(home: Path, tmp_path: Path) -> None:
    import mnistzoo

    result = mnistzoo.train("softmax_sgd", epochs=1, limit=300, out=tmp_path)
    assert result.card["id"] == "softmax_sgd" and result.card["train_images"] == 300
