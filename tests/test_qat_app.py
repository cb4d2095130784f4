"""Issue 18 in the app (AppTest): QAT is a mode of Explore and Sweep, with its epochs, and bad QAT input is
refused on the page before anything runs."""

from tests.test_app import _app, _errors


def test_explore_offers_qat_with_its_epochs_and_refuses_a_backend_without_a_qat_flow():
    at = _app("pages/explore.py", mode="qat", granularity="per-tensor")
    assert "qat" in at.selectbox(key="mode").options
    assert at.selectbox(key="qat_epochs").value == 1.0 and not _errors(at)
    assert not next(b for b in at.button if b.label == "Run").disabled
    at = _app("pages/explore.py", mode="qat", backend="pt2e")
    assert any("backend='pt2e' does not run mode='qat'" in e for e in _errors(at)), _errors(at)
    at = _app("pages/explore.py", mode="qat", precision="FP16")  # a float cast has no mode: no QAT to refuse
    assert not _errors(at)
    assert "qat_epochs" not in [s.key for s in at.selectbox]


def test_sweep_grid_of_static_and_qat_counts_the_qat_spec_and_fp32_qat_is_no_skip():
    at = _app("pages/sweep.py", g_mode=["static", "qat"], g_qat_epochs="0.1")
    assert at.selectbox(key="g_qat_epochs").value == 0.1
    assert any("**2 specs + the FP32 baseline** to measure" in m.value for m in at.markdown), \
        [m.value for m in at.markdown][:8]
    # FP32 is the baseline (issue 24, item 7): FP32 x qat is not a skipped combination
    assert not any("mode='qat' is not allowed with precision='fp32'" in m.value for m in at.markdown)
    assert not any("skipped as impossible" in m.value for m in at.markdown), [m.value for m in at.markdown][:8]
