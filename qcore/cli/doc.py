"""docs/cli.md, rendered from the argparse definitions (:func:`qcore.cli.build_parser`) so that it cannot drift.

Regenerate it with ``python -m qcore.cli.doc > docs/cli.md``; tests/cli/test_doc.py fails while it is stale.
Nothing here uses argparse's own help formatter: its line wrapping follows the terminal's width and its layout
changes between Python versions, and the file must be the same everywhere.
"""

from __future__ import annotations

import argparse
import html

__all__ = ["REGENERATE", "render", "main"]

REGENERATE = "python -m qcore.cli.doc > docs/cli.md"

_HEADER = f"""# Command-line reference

<!-- Generated from the argparse definitions in qcore/cli/ by `{REGENERATE}`; do not edit it by hand
     (tests/cli/test_doc.py fails while it is stale). -->

`pip install .` (or `make run` / `make test`, which install the checkout in editable mode) puts a `qcore` command
in the environment; `python -m qcore` is the same command. `qcore -h` lists the commands and `qcore COMMAND -h`
explains one; every command takes `-h`/`--help`.

Exit status: 0 done; 1 could not (a failed spec, offline, missing data or checkout); 2 bad input (an unknown
option or value, a value out of range, an unknown command or none: the usage goes to standard error); 3 no point
meets the budget (`sweep` and `runs` with `--sla-ms`, `--sla-speedup` or `--max-drop`: a CI pipeline can gate on
it; otherwise their own status); 130 interrupted (Ctrl-C).
"""


def _cell(text: object) -> str:
    """``text`` as prose in one Markdown table cell: one line, ``<path>`` shown rather than taken for HTML."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _code(text: object) -> str:
    """``text`` as code in one Markdown table cell (GitHub's tables take ``\\|`` for a pipe inside code too)."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return f"`{text}`" if text else '`""`'


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%(" in text:  # argparse's own substitutions, as its help would show them
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        text = text % {**params, "prog": prog}
    return _cell(text)


def _default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value is argparse.SUPPRESS or isinstance(action, (argparse._StoreTrueAction,
                                                                          argparse._StoreFalseAction)):
        return ""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return _code(value)


def _value(action: argparse.Action) -> str:
    """What the option takes: nothing (a flag), one of its choices, or its metavar."""
    if action.nargs == 0:
        return "flag"
    if action.choices is not None:
        return "one of " + ", ".join(f"`{c}`" for c in action.choices)
    name = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    more = {"*": " (any number)", "+": " (one or more)", "?": " (optional)"}.get(action.nargs, "")
    return f"`{name}`{more}" + (" (repeatable)" if isinstance(action, argparse._AppendAction) else "")


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    return ", ".join(f"`{s}`" for s in action.option_strings) + (" (required)" if action.required else "")


def _usage(prog: str, parser: argparse.ArgumentParser) -> str:
    """``prog --required VALUE POSITIONAL [options]``: the shape of a command, not argparse's wrapped usage."""
    words, optional = [prog], False
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help is argparse.SUPPRESS:
            continue
        if not action.option_strings:
            name = (action.metavar or action.dest).upper()
            words.append({"*": f"[{name} ...]", "+": f"{name} [{name} ...]", "?": f"[{name}]"}.get(action.nargs, name))
        elif action.required:
            words.append(f"{action.option_strings[-1]} {action.metavar or action.dest.upper()}")
        else:
            optional = True
    return " ".join(words + (["[options]"] if optional else []))


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of each listed subcommand, in the order ``qcore -h`` lists them."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(choice.dest, choice.help or "", sub.choices[choice.dest]) for choice in sub._choices_actions]


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown reference of ``parser`` (default: ``build_parser(prog="qcore")``): every command with its
    help, and every option with what it takes, its default and its help."""
    if parser is None:
        from qcore.cli import build_parser

        parser = build_parser(prog="qcore")
    commands = _commands(parser)
    out = [_HEADER, "| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#qcore-{name}) | {_cell(help_)} |" for name, help_, _ in commands]
    for name, help_, sub in commands:
        out += ["", f"## qcore {name}", "", _cell(help_[:1].upper() + help_[1:]) + "."]
        if sub.description:
            out += ["", _cell(sub.description)]
        out += ["", f"Usage: `{_usage(f'{parser.prog} {name}', sub)}`"]
        rows = [a for a in sub._actions if not isinstance(a, argparse._HelpAction) and a.help is not argparse.SUPPRESS]
        if rows:
            out += ["", "| option | takes | default | help |", "|---|---|---|---|"]
            out += [f"| {_name(a)} | {_value(a)} | {_default(a)} | {_help(a, sub.prog)} |" for a in rows]
        if sub.epilog:
            out += ["", _cell(sub.epilog)]
    return "\n".join(out) + "\n"


def main() -> int:
    """Print :func:`render` (``python -m qcore.cli.doc > docs/cli.md``)."""
    print(render(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
