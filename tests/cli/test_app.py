"""``qcore app`` (qcore.cli.app): the checkout it runs from, a taken port, and a real start answering its health
check; ``qcore`` with no command or an unknown one."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import qcore
from qcore.cli import app as app_cli
from qcore.cli import main
from scripts.browser import stop_server

ROOT = Path(__file__).resolve().parents[2]


def _listening() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1, as a running app's would be."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_the_app_runs_from_this_checkout_with_make_runs_command():
    assert app_cli.find_checkout() == ROOT
    make_run = (ROOT / "Makefile").read_text().split("\nrun:\n")[1].split("\n\n")[0]
    python, dash_m, streamlit, *args = app_cli.streamlit_command(8501)
    assert (python, dash_m, streamlit) == (sys.executable, "-m", "streamlit")
    assert f"/streamlit {' '.join(args)}" in make_run  # the same arguments as `make run`, port included


def test_a_taken_port_is_a_usage_error_that_names_a_free_one(capsys):
    with _listening() as taken:
        port = taken.getsockname()[1]
        assert not app_cli.port_free(port)
        assert main(["app", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"port {port} on 127.0.0.1 is taken" in err, err
        suggested = int(re.search(r"--port (\d+)$", err.strip()).group(1))
        assert suggested != port and app_cli.port_free(suggested)


def test_without_a_checkout_the_app_says_where_to_get_one(tmp_path, monkeypatch, capsys):
    installed = tmp_path / "site-packages" / "qcore"  # a plain `pip install .`: no app.py beside the package
    installed.mkdir(parents=True)
    monkeypatch.setattr(qcore, "__file__", str(installed / "__init__.py"))
    monkeypatch.chdir(tmp_path)
    assert app_cli.find_checkout() is None
    assert main(["app"]) == 1
    err = capsys.readouterr().err
    assert "runs from a checkout" in err and "pip install -e ." in err and "make run" in err
    monkeypatch.chdir(ROOT)  # inside a checkout it is found from the current folder
    assert app_cli.find_checkout() == ROOT


@pytest.mark.parametrize("argv", [[], ["no-such-command"]], ids=["none", "unknown"])
def test_no_command_or_an_unknown_one_prints_the_usage_and_exits_2(argv):
    out = subprocess.run([sys.executable, "-m", "qcore", *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("usage: python -m qcore ") and out.stdout == ""
    assert ("required: command" if not argv else "invalid choice: 'no-such-command'") in out.stderr


def test_qcore_app_starts_streamlit_which_answers_its_health_check(tmp_path):
    port = app_cli.free_port(8600)
    env = {**os.environ, "QCORE_HOME": str(tmp_path), "QCORE_APP_NO_WORKER": "1"}
    env.pop("QCORE_DB", None)
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "qcore", "app", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, answer = time.monotonic() + 300, None  # a loaded machine: imports alone take tens of seconds
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
                    answer = r.read().strip()
            except OSError:
                time.sleep(0.5)
        assert answer == b"ok", log.read_text()[-2000:]
        assert f"on http://127.0.0.1:{port}" in log.read_text()
    finally:
        stop_server(proc)
