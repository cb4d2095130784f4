"""Per-layer rows of sensitivity jobs, and the stored order of walks, in the run database (``qcore.runs.store``'s file).

Each layer's row is committed alone the moment it is measured (``INSERT OR REPLACE`` keyed by job and layer), so
a killed or cancelled job keeps every finished layer and a resumed one measures only the rest. A walk stores its
order once, before its first step, so a resumed walk keeps the order it started with (a random order stays the
one its seed drew; a ranking is not recomputed from slightly different calibration).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from qcore.layers.row import LayerRow

__all__ = ["SCHEMA", "LayerRows"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS layer_rows (
    job_id TEXT NOT NULL,
    layer TEXT NOT NULL,
    position INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, layer)
);
CREATE TABLE IF NOT EXISTS layer_walks (
    job_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
"""


class LayerRows:
    """The two tables above in the database at ``path`` (a :class:`qcore.runs.store.Store`'s ``path``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with closing(self._connect()) as c:
            c.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def add(self, job_id: str, row: LayerRow) -> None:
        with closing(self._connect()) as c:
            c.execute("INSERT OR REPLACE INTO layer_rows VALUES (?,?,?,?)",
                      (job_id, row.layer, row.position, json.dumps(row.to_dict())))

    def rows(self, job_id: str) -> list[LayerRow]:
        """The job's rows in the model's layer order."""
        with closing(self._connect()) as c:
            found = c.execute("SELECT body FROM layer_rows WHERE job_id=? ORDER BY position", (job_id,)).fetchall()
        return [LayerRow.from_dict(json.loads(b)) for (b,) in found]

    def set_walk(self, job_id: str, body: dict) -> None:
        with closing(self._connect()) as c:
            c.execute("INSERT OR REPLACE INTO layer_walks VALUES (?,?)", (job_id, json.dumps(body)))

    def walk(self, job_id: str) -> dict | None:
        with closing(self._connect()) as c:
            found = c.execute("SELECT body FROM layer_walks WHERE job_id=?", (job_id,)).fetchone()
        return json.loads(found[0]) if found else None
