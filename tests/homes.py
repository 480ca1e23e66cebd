"""Point MNISTZOO_HOME somewhere for a block, for session fixtures that outlive one test's monkeypatch."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def using_home(home: Path) -> Iterator[Path]:
    old = os.environ.get("MNISTZOO_HOME")
    os.environ["MNISTZOO_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            del os.environ["MNISTZOO_HOME"]
        else:
            os.environ["MNISTZOO_HOME"] = old
