"""What the AppTest files share: the app's path, opening a page with a link's values, errors, a button click.

Two ways a link reaches a page, and they differ: :func:`open_linked` sets the query before the first run (a link
opened in a new tab: Home reads it, then the page), :func:`open_page` switches to the page first and then sets
the query (a page reloaded with new values). AppTest's timeout is longer than torch's first import.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

__all__ = ["ROOT", "APP", "open_linked", "open_page", "errors", "click"]

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_linked(page: str | None = None, timeout: int = 180, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page).run()
    return _ok(at)


def open_page(page: str | None = None, timeout: int = 240, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(page)
    at.query_params.update(query)
    at.run()
    return _ok(at)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click().run()
    return _ok(at)
