import subprocess
import sys


def test_import_qcore_pulls_in_neither_streamlit_nor_plotly():
    code = (
        "import sys, qcore, qcore.quant.spec, qcore.runs.store, qcore.present.report, qcore.runs.sweep, qcore.backends,"
        " qcore.service.worker;"
        "bad = [m for m in ('streamlit', 'plotly') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_qcore_alone_does_not_import_torch():
    code = "import sys, qcore; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
