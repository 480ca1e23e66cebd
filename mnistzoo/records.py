"""Reading back the JSON records mnistzoo writes, each checked for the keys its readers use.

Any record may be garbage, truncated, of the wrong JSON type or missing keys (a crash, a disk
fault, a hand edit): :func:`read_json` turns each of those into one :class:`InvalidInput` line
that names the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InvalidInput

# The top-level keys (and their JSON types) each record's readers rely on.
SCHEMAS: dict[str, tuple[type, dict[str, type | tuple[type, ...]]]] = {
    "state": (dict, {"config": dict, "history": list, "checkpoint_sha256": str}),
    "card": (dict, {"id": str, "version": int, "recipe": dict, "recipe_is_original": bool, "seed": int,
                    "epochs_run": int, "results": dict, "model_sha256": str, "dataset": dict, "overrides": dict}),
    "history": (list, {}),
    "export": (dict, {"model": str, "opsets": dict}),
    "eval": (dict, {"accuracy": (int, float), "latency": list}),
}


def read_json(path: Path, kind: str, fix: str) -> dict | list:
    """The record at ``path``, checked against ``SCHEMAS[kind]``; ``fix`` says what to do if it is bad."""
    top, keys = SCHEMAS[kind]
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{path}: missing; {fix}") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: unreadable or not JSON, the file is corrupt or truncated "
                           f"({type(exc).__name__}); {fix}") from None
    if not isinstance(doc, top):
        raise InvalidInput(f"{path}: expected a JSON {'object' if top is dict else 'list'}, found "
                           f"{type(doc).__name__}; {fix}")
    bad = [k for k, t in keys.items() if not isinstance(doc.get(k), t) or (t is int and isinstance(doc[k], bool))]
    if bad:
        raise InvalidInput(f"{path}: missing or mistyped {', '.join(repr(k) for k in bad)}; {fix}")
    if kind == "history" and not all(isinstance(row, dict) for row in doc):
        raise InvalidInput(f"{path}: expected a list of per-epoch objects; {fix}")
    return doc
