"""The bench scripts start: they are run by hand on a quiet machine, so a broken import would go unseen."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_peers_help_runs():
    # as a script from the checkout's root, whose qcore it imports (installed or not: python -c puts the
    # working directory first on sys.path)
    code = ("import runpy, sys; sys.argv = ['bench/peers.py', '--help']; "
            "runpy.run_path('bench/peers.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "ratio_to_best_peer_int8" in out.stdout and "--engines" in out.stdout
    assert "auto_ratio_to_best_peer_int8" in out.stdout and "xnnpack-int8" in out.stdout
    assert "gemmcpp" in out.stdout and "--record-auto" in out.stdout  # the PT2E options are listed
    bad = subprocess.run([sys.executable, "bench/peers.py", "--engines", "qcore-pt2e-int8+turbo"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2 and "unknown PT2E option(s) ['turbo']" in bad.stderr


def test_bench_profile_help_runs():
    out = subprocess.run([sys.executable, "bench/profile_int8.py", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--onednn-verbose" in out.stdout and "--engine" in out.stdout


def test_bench_stability_help_runs():
    code = ("import runpy, sys; sys.argv = ['bench/stability.py', '--help']; "
            "runpy.run_path('bench/stability.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "--protocol" in out.stdout and "--diagnose" in out.stdout and "--repeat" in out.stdout
def test_bench_zoo_help_runs():
    out = subprocess.run([sys.executable, "bench/zoo.py", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "--timeout" in out.stdout and "--redo" in out.stdout and "--table-only" in out.stdout


def test_bench_runs_page_help_runs():
    out = subprocess.run([sys.executable, "bench/runs_page.py", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--n" in out.stdout and "--sessions" in out.stdout


def test_bench_ptq_help_runs():
    out = subprocess.run([sys.executable, "bench/ptq.py", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "--adaround-iters" in out.stdout and "--models" in out.stdout


def test_bench_gpu_figures_says_there_is_no_gpu_and_exits_cleanly():
    out = subprocess.run([sys.executable, "bench/gpu_figures.py", "--limit", "5"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    if not __import__("torch").cuda.is_available():
        assert "no CUDA GPU visible: nothing to measure here" in out.stdout
