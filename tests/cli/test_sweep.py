"""``python -m qcore sweep`` and ``runs``: a real small sweep written as CSV, bad grids refused, the progress bar."""

import csv
import io
import subprocess
import sys

import pytest

from qcore.cli.progress import ProgressBar
from qcore.metrics.result import COLUMNS

# A real small sweep's subprocess: seconds when quiet with the compiled FP32 reference in the shared build cache;
# its first C++ build and a load of 10-15 on 2 cores make it many minutes. Generous: it only costs when failing.
SWEEP_S = 1500


@pytest.mark.timeout(SWEEP_S + 300)
def test_cli_sweep_writes_csv(tmp_path, fashion_mnist, resnet18_checkpoint):
    out = tmp_path / "r.csv"
    cmd = [
        sys.executable,
        "-m",
        "qcore",
        "sweep",
        "--model",
        "resnet18",
        "--weights",
        str(resnet18_checkpoint),
        "--precision",
        "fp32,int8,int4",
        "--mode",
        "static,weight-only",
        "--granularity",
        "per-channel",
        "--calib-size",
        "16",
        "--eval-limit",
        "32",
        "--latency-budget",
        "0.2",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SWEEP_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped" in proc.stderr and "not allowed with precision='int4'" in proc.stderr
    assert "backend='weight-only'" not in proc.stderr  # auto runs every kind: nothing refused by the registry
    with out.open() as fh:
        assert next(csv.reader(fh)) == list(COLUMNS)  # the columns of before, then baseline_run_id
    rows = list(csv.DictReader(out.open()))
    assert [r["precision"] for r in rows] == ["fp32", "int8", "int8", "int4"]
    assert float(rows[0]["top1"]) <= 100 and rows[3]["kernel"] == "simulated"
    assert {r["baseline_run_id"] for r in rows} == {rows[0]["run_id"]}  # every row names the FP32 row
    assert "FP32" in proc.stdout  # the summary table
    runs = subprocess.run([sys.executable, "-m", "qcore", "runs"], capture_output=True, text=True, timeout=120)
    assert runs.returncode == 0 and "4 result(s)" in runs.stderr and "INT4 per-channel" in runs.stdout


FIVE = ["INT8 per-channel min-max asym static", "INT8 per-tensor min-max asym static",
        "INT8 per-channel entropy (KL) asym static", "INT8 per-tensor MSE sym static"]


@pytest.mark.timeout(SWEEP_S + 300)
def test_cli_sweep_of_a_spec_list_is_one_job_with_fp32_measured_once(tmp_path, fashion_mnist, resnet18_checkpoint):
    """An engineer's five specs (four INT8 static settings, INT4 weight-only per-group 64): one job, one FP32 row."""
    from qcore.quant.spec import QuantSpec
    from qcore.runs.store import Store

    listing = tmp_path / "specs.txt"
    listing.write_text("# the INT4 one\nint4 weight-only per-group 64 mse\n")
    out = tmp_path / "r.csv"
    cmd = [sys.executable, "-m", "qcore", "sweep", "--model", "resnet18", "--weights", str(resnet18_checkpoint),
           "--calib-size", "16",
           "--eval-limit", "32", "--latency-budget", "0.2", "--out", str(out), "--specs", str(listing)]
    for label in FIVE:
        cmd += ["--spec", label]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SWEEP_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "5 spec(s) + the FP32 baseline to measure" in proc.stderr
    rows = list(csv.DictReader(out.open()))
    labels = [r["label"] for r in rows]
    assert sorted(labels) == sorted(["FP32", *FIVE, "INT4 per-group(64) MSE asym weight-only"])
    assert len({r["sweep_id"] for r in rows}) == 1 and labels.count("FP32") == 1
    (job,) = Store().jobs()
    assert [QuantSpec.from_dict(d).label() for d in job.specs] == [*FIVE, "INT4 per-group(64) MSE asym weight-only"]


def test_cli_refuses_a_listed_spec_that_cannot_be(tmp_path):
    cmd = [sys.executable, "-m", "qcore", "sweep", "--spec", "int8 per-channel", "--spec", "int4 static"]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "mode='static' is not allowed with precision='int4'" in bad.stderr, bad.stderr
    (tmp_path / "l.txt").write_text("int8\nint8 static [torchao]\n")
    bad = subprocess.run([sys.executable, "-m", "qcore", "sweep", "--specs", str(tmp_path / "l.txt")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "spec 'INT8 per-channel min-max asym static [torchao]': backend='torchao' does " \
        "not run mode='static'" in bad.stderr, bad.stderr


def test_cli_refuses_a_bad_grid_value(fashion_mnist):
    proc = subprocess.run(
        [sys.executable, "-m", "qcore", "sweep", "--precision", "int3"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "argument --precision: 'int3' is not allowed; allowed: fp32" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "qcore", "sweep", "--image-size", "4"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "argument --image-size: '4' is not allowed; allowed: 8..1024" in proc.stderr


def test_cli_refuses_a_backend_that_never_runs_the_mode(fashion_mnist):
    proc = subprocess.run([sys.executable, "-m", "qcore", "sweep", "--precision", "int8", "--backend", "torchao"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "skipped 1 combination(s): backend='torchao' does not run mode='static'; allowed: auto, fx" in proc.stderr


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_one_line_with_the_time_left(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("qcore.cli.progress.time.monotonic", lambda: now[0])
    out = _Pipe()
    bar = ProgressBar(out, width=10)
    now[0] = 30.0
    bar(2, 8, "INT8 static")  # 2 of 8 after 30 s: 6 x 15 s left
    bar.close()
    assert out.getvalue() == "\r[##........]  25%  2/8  ETA 1m30s  INT8 static\x1b[K\n"
    log = io.StringIO()  # not a terminal: a plain line every 10 points, and the last one
    bar = ProgressBar(log, eta=False)
    for done in range(1, 21):
        bar(done, 20, f"step {done}")
    assert log.getvalue().splitlines() == [f"{5 + 10 * i:3d}%  step {1 + 2 * i}" for i in range(10)] + ["100%  step 20"]


def test_cli_qat_bad_input_is_refused_before_any_work(fashion_mnist):
    """Issue 18: epochs <= 0 is a usage error; FP32 QAT and a backend without a QAT flow are skipped, naming why."""
    proc = subprocess.run([sys.executable, "-m", "qcore", "sweep", "--mode", "qat", "--qat-epochs", "0.5,0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "argument --qat-epochs: qat_epochs=0.0 is not allowed; allowed: a number in (0, 100]" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "qcore", "sweep", "--precision", "fp32,int8", "--mode", "qat",
                           "--backend", "ort"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "error: no valid spec in this grid" in proc.stderr
    assert "mode='qat' is not allowed with precision='fp32': a float cast has no quantization ranges" in proc.stderr
    assert "backend='ort' does not run mode='qat'" in proc.stderr
def test_cli_refuses_bad_calibration_draws_and_lists(tmp_path, fashion_mnist, resnet18_checkpoint):
    def sweep(*args):
        cmd = [sys.executable, "-m", "qcore", "sweep", "--model", "resnet18", "--weights", str(resnet18_checkpoint),
               "--eval-limit", "8", "--no-store", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    zero = sweep("--calib-draws", "0")
    assert zero.returncode == 2 and "--calib-draws" in zero.stderr and "1" in zero.stderr and "100" in zero.stderr
    listed = tmp_path / "calib.txt"
    listed.write_text("12\n70000\n")
    both = sweep("--calib-draws", "2", "--calib-list", str(listed))
    assert both.returncode == 2 and "calib_draws=2 is not allowed with calib_list" in both.stderr
    unknown = sweep("--calib-list", str(listed))
    assert unknown.returncode == 2, unknown.stderr[-2000:]
    assert f"line 2 of {listed}: index 70000 is not in the training split; allowed: 0 to 59999" in unknown.stderr
    many = sweep("--calib-size", "40000", "--calib-draws", "2")
    assert many.returncode == 2 and "the training split has 60,000, enough for at most 1 draw(s)" in many.stderr
