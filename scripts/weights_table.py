"""Rewrite the README's table of every model's published files from ``published/manifest.json``, the cards in
``results/`` and the specs.

    python scripts/weights_table.py [--check]

``--check`` rewrites nothing and exits 1 when the README's table is not the one the files give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnistzoo._io import atomic_path
from mnistzoo.publish import weights_table

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- weights-table:start -->\n", "<!-- weights-table:end -->"


def current() -> tuple[str, str]:
    """The README's text, and the same text with the table the files give."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    table = weights_table(ROOT / "published" / "manifest.json", ROOT / "results")
    return text, head + START + table + END + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the table is current")
    args = parser.parse_args()
    text, wanted = current()
    if args.check:
        sys.exit(0 if text == wanted else "README.md: the weights table is out of date; run "
                 "`python scripts/weights_table.py`")
    with atomic_path(ROOT / "README.md") as tmp:
        tmp.write_text(wanted, encoding="utf-8")


if __name__ == "__main__":
    main()
