"""Malformed zoo_specs files are refused with an error naming the file, the id and the field."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest

from mnistzoo.errors import SpecError
from mnistzoo.zoo.specs import STUDIES, load_specs


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    """A writable copy of the packaged spec files."""
    for study in STUDIES:
        src = resources.files("mnistzoo.zoo_specs") / f"{study}.toml"
        shutil.copyfile(str(src), tmp_path / f"{study}.toml")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_copy_loads_all_37(specs_dir: Path) -> None:
    assert len(load_specs(specs_dir)) == 37


@pytest.mark.parametrize(("study", "old", "new", "message"), [
    ("depth", 'variable = "model_2_b"', "variable = 2",
     r"depth.toml: models.mlp3_dropout_bn: field 'variable' must be str, got 2"),
    ("init", 'section = "MLP + ReLU +Adam"\n', "", r"init.toml: models.mlp2_he: missing field 'section'"),
    ("init", 'optimizer = "sgd"', 'optimizer = "rmsprop"',
     r"init.toml: models.softmax_sgd: field 'optimizer' must be one of sgd, adam"),
    ("fashion", "test_loss = 0.537", "test_los = 0.537",
     r"fashion.toml: models.fashion_mlp2.reference: unknown field 'test_los'"),
    ("cnn", "epochs = 25", "epochs = 0", r"cnn.toml: models.cnn2_k3: fields 'batch_size' and 'epochs' must be positive"),
])
def test_malformed_field_names_file_id_field(specs_dir: Path, study: str, old: str, new: str, message: str) -> None:
    edit(specs_dir / f"{study}.toml", old, new)
    with pytest.raises(SpecError, match=message):
        load_specs(specs_dir)


def test_invalid_toml(specs_dir: Path) -> None:
    (specs_dir / "cnn.toml").write_text("[study\n")
    with pytest.raises(SpecError, match=r"cnn.toml: not valid TOML"):
        load_specs(specs_dir)


def test_duplicate_id_across_files(specs_dir: Path) -> None:
    with (specs_dir / "init.toml").open("a") as fh:
        fh.write('\n[models.mlp2]\nversion = 1\nsection = "x"\nvariable = "y"\nreference = {}\n')
    with pytest.raises(SpecError, match=r"init.toml: models.mlp2: id already defined in depth.toml"):
        load_specs(specs_dir)
