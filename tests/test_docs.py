"""README.md is the front door and its claims hold: the offline default it names is the one the app starts on,
the two commands exist, every command it shows parses, every link it (and docs/) makes leads somewhere, and
docs/backends.md's table is the registry's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_readme_is_a_front_door():
    lines = _text(README).splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; the rest belongs in docs/ (docs/guide.md)"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:3] == ["## Two commands", "## The pages", "## The command line"], headings


def test_the_offline_default_the_readme_names_is_the_one_the_app_starts_on():
    from qcore.runs.sweep_config import SweepConfig

    model = SweepConfig().model
    for path in (README, ROOT / "docs" / "guide.md"):
        flat = re.sub(r"\s+", " ", _text(path).replace("**", ""))
        named = re.findall(r"offline default: (\w+) on Fashion-MNIST", flat, flags=re.I)
        assert named == [model], f"{path.name} names the offline default as {named}; the app starts on {model}"
    # and it trains nothing: its baseline ships, scoring what the README says (tests/test_train.py scores it)
    from qcore.nets import train

    path = train.find_baseline(model, "fashion-mnist")
    assert path is not None and path.parent == train.SHIPPED
    accuracy = train.baseline_meta(path)["test_accuracy"]
    assert f"{accuracy:.2%} top-1" in _text(README)


def test_the_two_commands_exist_and_do_what_the_readme_says():
    make = _text(ROOT / "Makefile")
    targets = dict(re.findall(r"^(\w+):\n((?:\t.*\n)+)", make, flags=re.M))
    assert "streamlit run app.py --server.address 127.0.0.1 --server.port 8501" in targets["run"]
    assert "pytest" in targets["test"] and "ruff check" in targets["test"]
    readme = _text(README)
    assert "`make run`" in readme and "`make test`" in readme and "http://127.0.0.1:8501" in readme
    assert "make test" in _text(ROOT / ".ci" / "run")  # CI runs exactly README's test command


def _commands(text: str) -> list[list[str]]:
    """Every ``python -m qcore ...`` command of the text's shell blocks, continuation lines joined; commands
    with ``...`` (an elided part) are left out."""
    out = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            m = re.search(r"(?:python -m qcore|(?:^|/)qcore)\s+(.*)$", command)
            if m and "..." not in command:
                out.append(shlex.split(m.group(1)))
    return out


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_command_the_docs_show_parses(path, capsys):
    from qcore.cli import build_parser

    parser = build_parser()
    for argv in _commands(_text(path)):
        try:
            parser.parse_args(argv)
        except SystemExit as stop:
            pytest.fail(f"{path.name}: `qcore {' '.join(argv)}` does not parse (exit {stop.code}): "
                        f"{capsys.readouterr().err.strip()}")


def test_the_readme_shows_commands():
    assert len(_commands(_text(README))) >= 4


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_leads_somewhere(path):
    text = _text(path)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name} links to {target}, which does not exist"
        if anchor and dest.suffix == ".md":
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.*)$", _text(dest), flags=re.M)}
            assert anchor in slugs, f"{path.name} links to {target}: no such heading in {dest.name}"


def test_the_backends_table_is_the_registry():
    from qcore.backends import _table

    text = _text(ROOT / "docs" / "backends.md")
    rows = dict(re.findall(r"^\| `([\w-]+)` \| ([\w, -]+) \|", text, flags=re.M))
    assert {name: tuple(kinds.split(", ")) for name, kinds in rows.items()} == {
        name: backend.kinds for name, backend in _table().items()}
