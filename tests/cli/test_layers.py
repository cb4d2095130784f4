"""``python -m qcore layers`` and ``mixed``: a CSV per layer, bad input refused before anything is stored."""

import csv

import pytest

from qcore.cli import main
from qcore.layers.table import LAYER_COLUMNS
from qcore.runs.store import Store


@pytest.fixture
def base(fashion_mnist, resnet18_checkpoint):
    return ["--model", "resnet18", "--weights", str(resnet18_checkpoint), "--calib-size", "16", "--eval-limit", "32",
            "--precision", "int8", "--granularity", "per-tensor", "--backend", "fx"]  # fmt: skip


def test_layers_writes_one_row_per_layer(base, tmp_path, capsys, one_thread):
    out = tmp_path / "layers.csv"
    assert main(["layers", *base, "--no-accuracy", "--error-images", "8", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    layers = [r for r in rows if r["kind"] == "layer"]  # then the activation quantizers between them
    assert len(layers) == 21 and layers[0]["layer"] == "conv1" and layers[-1]["layer"] == "fc"
    assert [r["layer"] for r in rows[21:]][:2] == ["act:input", "act:maxpool"] and len(rows) == 31
    assert rows[21]["weight_sqnr_db"] == "" and 20 < float(rows[21]["output_sqnr_db"]) < 60
    assert list(rows[0])[: len(LAYER_COLUMNS)] == list(LAYER_COLUMNS)
    assert 30 < float(rows[0]["weight_sqnr_db"]) < 55 and rows[0]["top1_only_float"] == ""
    assert rows[0]["spec"] == "INT8 per-tensor min-max asym static [fx]"
    err = capsys.readouterr().err
    assert "21 layers and 10 activation quantizers: 1 model build(s) and 1 evaluation(s) of 32 images" in err
    (job,) = Store().jobs(kind="layers")
    assert job.state == "done"


def test_bad_input_is_refused_and_nothing_is_written(base, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["layers", *base, "--layers", "fc2", "--no-accuracy", "--out", str(out)]) == 2
    assert "no layer 'fc2'; near names: fc" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["mixed", *base, "--steps", "0"])
    assert exc.value.code == 2 and "a budget of 0 measures nothing" in capsys.readouterr().err
    assert main(["mixed", *base, "--precision", "int4", "--mode", "static"]) == 2
    assert "no INT4 activation kernels" in capsys.readouterr().err
    assert main(["mixed", *base, "--promote-to", "int8"]) == 2  # base is INT8 static: nothing above it but FP32
    assert "promote_to='int8' is not allowed with INT8 per-tensor" in capsys.readouterr().err
    assert [j.kind for j in Store().jobs()] == ["layers"]  # the refused walk stored no job
