"""Where run directories live (a light module: no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

from ._io import zoo_home


def runs_dir(out: Path | None = None) -> Path:
    """Where run directories live: ``--out`` or ``$MNISTZOO_HOME/runs``."""
    return Path(out) if out is not None else zoo_home() / "runs"
