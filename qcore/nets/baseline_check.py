"""A cached baseline checked before it is used: a cut, empty or garbled ``.safetensors`` or a broken ``.json``.

:func:`problem` reads only the safetensors header and the JSON record (no tensor), and says what is wrong with the
file named; :func:`move_aside` renames a damaged copy (both files) to ``<name>.damaged-<time>`` so the next
candidate is used (the shipped one, else a new training) and the damaged one is kept to look at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qcore.env.paths import damaged_name

__all__ = ["problem", "move_aside"]


def problem(path: Path) -> str | None:
    """What is wrong with the baseline at ``path`` and its ``.json`` record, naming the file; None when sound."""
    meta = path.with_suffix(".json")
    try:
        record = json.loads(meta.read_text())
        if not isinstance(record, dict):
            return f"{meta} is not a JSON object"
    except (OSError, ValueError) as exc:
        return f"{meta} cannot be read ({type(exc).__name__}: {exc})"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n <= 0 or 8 + n > size:
                return f"{path} is cut short or empty ({size:,} bytes)"
            header = json.loads(fh.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            return f"{path} is cut short ({size:,} bytes of {8 + n + end:,})"
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"{path} is not a readable safetensors file ({type(exc).__name__})"
    return None


def move_aside(path: Path) -> Path:
    """Rename the baseline at ``path`` (and its record) to ``<name>.damaged-<time>``; returns the new path."""
    record = path.with_suffix(".json")
    out = damaged_name(path)
    twin = record.with_name(record.name + out.name[len(path.name) :])  # the same ".damaged-<time>": a pair
    twin = damaged_name(record) if twin.exists() else twin
    for p, q in ((path, out), (record, twin)):
        if p.exists():
            os.replace(p, q)
    return out
