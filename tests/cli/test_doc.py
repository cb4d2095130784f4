"""docs/cli.md is the argparse definitions rendered (qcore.cli.doc): every command and option, and current."""

from __future__ import annotations

import argparse
from pathlib import Path

from qcore.cli import build_parser
from qcore.cli.doc import REGENERATE, render

ROOT = Path(__file__).resolve().parents[2]


def test_docs_cli_md_is_current():
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), (
        f"docs/cli.md is stale: regenerate it with `.venv/bin/{REGENERATE}` in the checkout")


def test_the_rendering_names_every_command_and_option_with_its_default():
    parser = build_parser(prog="qcore")
    text = render(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"sweep", "runs", "models", "app"}
    for name, command in sub.choices.items():
        assert f"\n## qcore {name}\n" in text and f"(#qcore-{name})" in text
        section = text.split(f"\n## qcore {name}\n")[1].split("\n## ")[0]
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings or [action.metavar or action.dest]:
                assert f"`{option}`" in section, f"{name}: {option} is missing from docs/cli.md"
    app = text.split("\n## qcore app\n")[1]
    assert "| `--port` | `PORT` | `8501` |" in app


def test_the_rendering_does_not_depend_on_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = render()
    monkeypatch.setenv("COLUMNS", "300")
    assert render() == narrow
