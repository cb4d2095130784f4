"""qcore installs like a Python package: pyproject.toml declares the requirement files' pins (runtime and the
extras) and a ``qcore`` command, and ``pip install .`` into a fresh virtualenv, offline, gives a qcore that runs
from outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = {"xnnpack": "requirements-xnnpack.txt", "cluster": "requirements-cluster.txt",
          "peers": "requirements-peers.txt", "test": "requirements-test.txt", "gpu": "requirements-gpu.txt"}


def _pins(lines) -> set[str]:
    """Requirement lines (comments dropped), normalised (``numpy>=1.26,<3`` and ``numpy<3,>=1.26`` are one)."""
    return {str(Requirement(line.split("#")[0].strip())) for line in lines if line.split("#")[0].strip()}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_pyproject_declares_the_requirement_files_pins():
    project = _project()
    assert _pins(project["dependencies"]) == _pins((ROOT / "requirements.txt").read_text().splitlines())
    extras = project["optional-dependencies"]
    assert set(extras) == set(EXTRAS)
    for extra, path in EXTRAS.items():
        assert _pins(extras[extra]) == _pins((ROOT / path).read_text().splitlines()), (
            f"pyproject.toml's [{extra}] differs from {path}: change both")


def test_pyproject_declares_the_qcore_command():
    assert _project()["scripts"] == {"qcore": "qcore.cli:main"}


def _dependencies_without_qcore(tmp_path: Path) -> Path:
    """A folder of links to this environment's installed packages, qcore's own install (editable, of some
    checkout) left out, so that the fresh venv sees the dependencies installed and qcore not."""
    site = Path(sysconfig.get_paths()["purelib"])
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        low = entry.name.lower()
        if low.startswith(("qcore", "__editable__")) or low.endswith(".pth"):
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_offline_gives_a_working_qcore_command(tmp_path):
    """A fresh venv sees this environment's dependencies (torch & co., already installed: no download) and
    nothing of qcore; ``pip install --no-index .`` resolves the declared dependencies against them (a pin that
    does not match fails the install), builds qcore from a copy of the checkout and installs the command."""
    import shutil

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    Path(site, "qcore-test-deps.pth").write_text(f"{_dependencies_without_qcore(tmp_path)}\n")
    source = tmp_path / "source"  # a copy: the build's build/ and *.egg-info stay out of the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "qcore", source / "qcore", ignore=ignore)
    for name in ("pyproject.toml", *(p.name for p in ROOT.glob("requirements*.txt"))):
        shutil.copy(ROOT / name, source / name)
    away = tmp_path / "elsewhere"  # no checkout here: what runs is the installed copy
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["QCORE_HOME"] = str(tmp_path / "home")
    env["PIP_CONFIG_FILE"] = os.devnull  # no find-links, extra index or constraints of this machine's pip config

    def run(*argv, timeout=300):
        return subprocess.run([str(a) for a in argv], cwd=away, env=env, capture_output=True, text=True,
                              timeout=timeout)

    out = run(py, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-cache-dir",
              "--disable-pip-version-check", str(source))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    out = run(py, "-c", "import qcore, importlib.metadata as m; print(qcore.__file__); print(m.requires('qcore'))")
    assert out.returncode == 0 and out.stdout.startswith(site), out.stdout + out.stderr
    assert "torch==2.14.1" in out.stdout
    qcore_cmd = venv / "bin" / "qcore"
    out = run(qcore_cmd, "--help", timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage: qcore "), out.stdout + out.stderr
    assert "app" in out.stdout and "sweep" in out.stdout
    out = run(qcore_cmd, "models", "--filter", "resnet18", timeout=180)
    assert out.returncode == 0 and "11.7M" in out.stdout, out.stdout + out.stderr
    out = run(qcore_cmd, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("usage: qcore "), out.stderr
    out = run(qcore_cmd, "app", timeout=120)  # installed without a checkout, away from one: says how to get it
    assert out.returncode == 1 and "runs from a checkout" in out.stderr, out.stderr
