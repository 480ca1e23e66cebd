"""Matplotlib without a display, and PNGs written atomically: shared by every stage that draws."""

from __future__ import annotations

from pathlib import Path

from ._io import atomic_path


def pyplot():  # noqa: ANN201 - matplotlib.pyplot, imported on first use
    """``matplotlib.pyplot`` on the Agg backend (headless); without the training extra, a one-line error."""
    from ._extras import require_extra

    require_extra("train", "plots", ("matplotlib",))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 90) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Write ``fig`` to ``path`` atomically and close it."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return path
