"""Markdown and HTML in what a user sends is shown as text on every page (issue 28, item 2): URL values
(``keep_float``, ``spec``, every bound setting), and an uploaded file's name as the shared "Uploads on this
server" list shows it. Each text an element carries (a message, caption, label, help) is rendered here with
markdown-it: no link, image or HTML element may come out of it, and no bare address GitHub Markdown would turn
into a link. ``tests/test_browser_escape.py`` checks the same in Chromium, with every other host blocked."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from qcore.quant.spec_ptq import PAPERS
from tests.apptest import open_linked

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LINK = "[Your session has expired: sign in again](http://attacker.test/login) ![](http://attacker.test/px)"
PAYLOAD = f"{LINK} <img src=http://attacker.test/h> :red[x]"
# every value a page reads from its URL (the bound widgets' keys, keep_float, spec, job, ckpt)
PARAMS = ["keep_float", "spec", "job", "ckpt", "model", "dataset", "weights", "precision", "granularity",
          "calibration", "scheme", "mode", "backend", "device", "layer", "kind", "method", "bits", "pct", "f_text",
          "f_model", "f_dataset", "f_sweep", "f_status", "f_precision", "x"]  # fmt: skip
PAGES = [None, "pages/explore.py", "pages/sweep.py", "pages/layers.py", "pages/learn.py", "pages/runs.py"]


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _texts(node) -> list[str]:
    """Every Markdown text of the element tree under ``node``: bodies, labels, help, captions, expander labels."""
    out = []
    proto = getattr(node, "proto", None)
    for owner in (proto, getattr(proto, "expandable", None)):
        for field in ("body", "label", "help", "text", "caption"):
            value = getattr(owner, field, None) if owner is not None else None
            if isinstance(value, str) and value:
                out.append(value)
    children = getattr(node, "children", None)
    for child in (children.values() if isinstance(children, dict) else []):
        out += _texts(child)
    return out


OWN_LINKS = tuple(sorted(set(PAPERS.values())))


def _foreign(at) -> list[str]:
    """The texts of the page whose Markdown renders a link, an image or HTML, or a bare address (GitHub Markdown
    makes it a link)."""
    texts = _texts(at.main) + _texts(at.sidebar)
    assert texts, "the element tree was not read"
    bad = []
    for text in texts:
        for url in OWN_LINKS:  # the app's own links (the papers its help cites) are the only ones allowed
            text = re.sub(r"\[[^\]]*\]\(" + re.escape(url) + r"\)", "", text)
        rendered = MD.render(text)
        shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
        if re.search(r"<(a|img|script|iframe)\b", rendered, re.I) or re.search(r"https?://|www\.", shown):
            bad.append(text)
    return bad


@pytest.mark.parametrize("page", PAGES)
def test_every_url_value_shows_as_text(page):
    at = open_linked(page, **{key: PAYLOAD for key in PARAMS})
    assert not _foreign(at), _foreign(at)
    if page in ("pages/explore.py", "pages/sweep.py"):  # the values were quoted (escaped), not dropped
        quoted = [t for t in _texts(at.main) if "attacker" in t]
        assert quoted, "the page did not say what it refused"


def test_an_upload_named_with_markdown_is_listed_as_text():
    """A hand-written upload request can name its file anything: the record keeps the name as sent."""
    import torch

    from qcore.service import uploads
    from tests.crafted import torch_bytes

    uploads.save_checkpoint(torch_bytes({"w": torch.ones(2)}), f"{LINK}.pt")
    at = open_linked("pages/explore.py")
    listed = [t for t in _texts(at.main) if "sign in again" in t]
    assert listed, _texts(at.main)
    assert not _foreign(at), _foreign(at)


def _shows_as_text(text: str) -> bool:
    rendered = MD.render(text)
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    return not re.search(r"<(a|img|script|iframe)\b", rendered, re.I) and not re.search(r"https?://|www\.", shown)


def test_class_names_under_the_thumbnails_show_as_text():
    """A zip's class folders may be named anything a folder can (no ``/``): each thumbnail's caption (Markdown, in
    Streamlit) shows the class name as its characters."""
    from qcore.service import uploads
    from tests import crafted as c

    classes = ["[sign in](https:attacker.test)", "![](attacker.test) www.attacker.test <img src=x>"]
    blob = c.zip_bytes([c.Entry(f"pets/{k}/{i}.png", c.small_png(30 * i)) for k in classes for i in range(3)])
    name = uploads.save_dataset(blob, "pets.zip")
    at = open_linked("pages/explore.py")
    at.selectbox(key="dataset").set_value(name).run()  # a URL cannot name a server folder: chosen on the page
    captions = [img.caption for image in at.get("image") for img in image.proto.imgs]
    assert len(captions) == 6 and all("sign in" in t or "img src" in t for t in captions), captions
    assert all(_shows_as_text(t) for t in captions), captions
    assert not _foreign(at), _foreign(at)


def test_the_cluster_panel_shows_the_address_and_its_error_as_text(monkeypatch):
    """``$QCORE_RAY_ADDRESS`` and the error the worker recorded (Ray's words, quoting whatever it was given) are shown
    as text on Home."""
    from qcore.cluster import write_snapshot

    monkeypatch.setenv("QCORE_RAY_ADDRESS", PAYLOAD)  # not an address: refused, and quoted
    at = open_linked()
    assert [e.value for e in at.error if "attacker" in e.value] and not _foreign(at), _foreign(at)
    monkeypatch.setenv("QCORE_RAY_ADDRESS", "127.0.0.1:6379")
    write_snapshot({"address": "127.0.0.1:6379", "nodes": [], "cpus": 0, "bench_slots": 0, "error": PAYLOAD})
    at = open_linked()
    assert [e.value for e in at.error if "could not reach" in e.value and "attacker" in e.value]
    assert not _foreign(at), _foreign(at)
