"""``qcore app``: start the Streamlit app on this machine only, as ``make run`` does (after its set-up).

The app (``app.py``, ``pages/``, ``ui/``, ``.streamlit/config.toml``) is not part of the installed package: it
runs from a checkout of the repository, the one an editable install (``pip install -e .``, scripts/setup.sh)
points at, else the current folder. Before Streamlit starts, the port is tried on 127.0.0.1: a taken port is a
usage error (exit status 2) that names a free one.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from pathlib import Path

__all__ = ["HOST", "DEFAULT_PORT", "is_checkout", "find_checkout", "port_free", "free_port", "streamlit_command",
           "cmd_app", "add_subcommand"]

HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def is_checkout(folder: Path) -> bool:
    """Whether ``folder`` holds the app: ``app.py`` beside ``pages/`` and ``ui/``."""
    return (folder / "app.py").is_file() and (folder / "pages").is_dir() and (folder / "ui").is_dir()


def find_checkout(cwd: Path | None = None) -> Path | None:
    """The checkout to run the app from: the one this qcore is imported from (an editable install or the
    checkout itself), else ``cwd`` (default: the current folder) when it is one; None when neither is."""
    import qcore

    for folder in (Path(qcore.__file__).resolve().parent.parent, Path(cwd or os.getcwd()).resolve()):
        if is_checkout(folder):
            return folder
    return None


def port_free(port: int, host: str = HOST) -> bool:
    """Whether a server can listen on ``host:port`` now (bound the way Tornado binds, with SO_REUSEADDR: a port
    a stopped app left in TIME_WAIT is free, one that something listens on is not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(after: int, host: str = HOST) -> int:
    """The first free port of the 100 above ``after``, else one the system picks."""
    for port in range(after + 1, min(after + 100, 65535) + 1):
        if port_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def streamlit_command(port: int = DEFAULT_PORT) -> list[str]:
    """The command ``make run`` runs (with this Python), to be run in the checkout."""
    return [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", HOST, "--server.port",
            str(port), "--server.headless", "true"]


def cmd_app(args: argparse.Namespace) -> int:
    """``app``: check the checkout, Streamlit and the port, then become ``streamlit run app.py`` (exec)."""
    folder = find_checkout()
    if folder is None:
        print("error: no app here: the app (app.py, pages/, ui/) runs from a checkout of the qcore repository, and "
              "this qcore is installed without one (a plain 'pip install .'). In a checkout, run 'make run', or "
              "'pip install -e .' and then 'qcore app' from anywhere, or 'qcore app' inside the checkout.",
              file=sys.stderr)
        return 1
    if importlib.util.find_spec("streamlit") is None:
        print(f"error: streamlit is not installed for {sys.executable}: 'pip install -e .' in {folder} installs "
              "it (or 'make run' there)", file=sys.stderr)
        return 1
    if not port_free(args.port):
        other = free_port(args.port)
        print(f"error: port {args.port} on {HOST} is taken (is the app already running? http://{HOST}:{args.port}); "
              f"port {other} is free: {args.parser.prog} --port {other}", file=sys.stderr)
        return 2
    print(f"starting the app from {folder} on http://{HOST}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(folder)  # as make run: .streamlit/config.toml and the pages are read from here
    command = streamlit_command(args.port)
    os.execv(command[0], command)
    return 0  # not reached: exec replaced this process


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: 1-65535")
    return port


def add_subcommand(subparsers) -> None:
    """Add ``app`` to an argparse subparsers object."""
    p = subparsers.add_parser("app", help=f"start the app on http://{HOST}:{DEFAULT_PORT} (as 'make run' does)",
                              description="Start the Streamlit app from this qcore's checkout (an editable install) "
                                          f"or the current folder, listening on {HOST} only.")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help="the port on 127.0.0.1; a taken one is an error that names a free one")
    p.set_defaults(func=cmd_app, parser=p)
