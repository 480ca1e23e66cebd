"""Malformed zoo_specs files are refused with an error naming the file, the id and the field."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest

from mnistzoo.zoo.specs import STUDIES, SpecError, load_specs


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


def test_wrong_type_names_file_id_field(specs_dir: Path) -> None:
    edit(specs_dir / "depth.toml", 'variable = "model_2_b"', "variable = 2")
    with pytest.raises(SpecError, match=r"depth.toml: models.mlp3_dropout_bn: field 'variable' must be str, got 2"):
        load_specs(specs_dir)


def test_missing_field(specs_dir: Path) -> None:
    edit(specs_dir / "init.toml", 'section = "MLP + ReLU +Adam"\n', "")
    with pytest.raises(SpecError, match=r"init.toml: models.mlp2_he: missing field 'section'"):
        load_specs(specs_dir)


def test_bad_recipe_override(specs_dir: Path) -> None:
    edit(specs_dir / "init.toml", 'optimizer = "sgd"', 'optimizer = "rmsprop"')
    with pytest.raises(SpecError, match=r"models.softmax_sgd: field 'optimizer' must be one of sgd, adam"):
        load_specs(specs_dir)


def test_unknown_reference_field(specs_dir: Path) -> None:
    edit(specs_dir / "fashion.toml", "test_loss = 0.537", "test_los = 0.537")
    with pytest.raises(SpecError, match=r"models.fashion_mlp2.reference: unknown field 'test_los'"):
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
