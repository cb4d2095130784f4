"""A damaged run database, said on every page instead of a crash: Home offers to salvage it.

:func:`guard` runs first on every page (``ui.nav.setup``): when SQLite cannot read the database (cut, a garbled
header or page: :mod:`qcore.runs.db_check`), Home says what happened, which file, and offers Salvage
(:mod:`qcore.runs.db_salvage`: what can be read, and the backup's rows, copied into a new database, the damaged
file kept beside it); the other pages say so in one message with a link to Home. Either stops the page there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import streamlit as st

from qcore.runs.db_check import StoreDamaged, is_damage
from qcore.runs.store import default_db

__all__ = ["damage", "guard"]

_REPORT = "qcore_salvage_report"  # session key: the last salvage's report, shown once on Home


def _signature(path: Path) -> tuple:
    out = []
    for p in (path, Path(f"{path}-wal")):
        try:
            s = p.stat()
            out.append((s.st_size, s.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=8)
def _damage(path: str, signature: tuple) -> str | None:
    if signature[0] is None:
        return None  # no database yet: the store makes one
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            found = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(StoreDamaged(path, str(exc))) if is_damage(exc) else None
    return None if found == ["ok"] else str(StoreDamaged(path, "; ".join(found)[:300]))


def damage() -> str | None:
    """What is wrong with the run database (the message names the file and what to do), or None."""
    path = default_db()
    return _damage(str(path), _signature(path))


def guard(title: str) -> None:
    """Stop the page with the damage named (Home: with Salvage) when the run database is damaged."""
    if title == "Home" and (report := st.session_state.pop(_REPORT, None)):
        st.success("The run database was salvaged.")
        st.code(report, language=None)
    problem = damage()
    if not problem:
        return
    if title != "Home":
        st.error(f"The run database is damaged, so this page cannot open. {problem}")
        st.page_link("app.py", label="Home: salvage the database", icon=":material/home:")
        st.stop()
    st.title("qcore: the run database is damaged")
    st.error(problem)
    st.markdown("**Salvage** copies every row that can still be read (and, for the rest, the rows of the last "
                "backup) into a new database; the damaged file is kept beside it, renamed. Stop running sweeps "
                "first.")
    if st.button("Salvage", type="primary", icon=":material/healing:"):
        from qcore.runs.db_salvage import salvage

        try:
            report = salvage(default_db())
        except (OSError, sqlite3.Error) as exc:
            st.error(f"Salvage failed: {exc}")
        else:
            st.session_state[_REPORT] = report.text()
            _damage.clear()
            st.rerun()
    st.stop()
