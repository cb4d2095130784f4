"""Issue 26, "Where": the culprits of a point from its Layers measurement, with their role in the network, and the
Layers job that measured the point's spec on the same numbers.

Oracles: roles are known by construction of a small model whose modules are registered in another order than
they are called; the ranking is the gains written into the rows by hand; the job is the one a temporary Store was
given, whatever else it holds.
"""

from __future__ import annotations

import sqlite3

import pytest
import torch
from torch import nn

from qcore.doctor.where import Culprit, activation_role, culprits, find_layers_job, layer_roles
from qcore.layers.job import layers_config
from qcore.layers.row import LayerRow
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep_config import SweepConfig


class Net(nn.Module):
    """Registered head first, called stem first: the roles must follow the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 10)
        self.hidden = nn.Linear(16, 16)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.pw = nn.Conv2d(8, 16, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        x = self.conv(self.pw(self.dw(self.stem(x))))
        return self.head(torch.relu(self.hidden(x.mean((2, 3)))))


def _row(name, pos, op, gain=None, kind="layer", wsqnr=None, osqnr=None, cannot_keep=""):
    return LayerRow(name, pos, op, 0 if kind == "activation" else 10, wsqnr, None, output_sqnr_db=osqnr,
                    gain_only_float=gain, kind=kind, cannot_keep=cannot_keep)


def test_roles_follow_the_calls_not_the_registration():
    roles = layer_roles(Net())
    assert roles == {"stem": "first conv", "dw": "depthwise conv", "pw": "pointwise conv", "conv": "conv",
                     "hidden": "linear", "head": "classifier"}
    Net()(torch.randn(1, 3, 8, 8))  # the model runs: the roles describe a real network


def test_the_culprits_are_the_largest_positive_gains_with_their_roles():
    rows = [_row("stem", 0, "Conv2d 3x3 3->8", 0.5), _row("dw", 1, "Conv2d 3x3 depthwise 8->8", 2.0),
            _row("pw", 2, "Conv2d 1x1 8->16", -0.3), _row("conv", 3, "Conv2d 3x3 16->16", None),
            _row("hidden", 4, "Linear 16->16", 1.0), _row("head", 5, "Linear 16->10", 2.0),
            _row("act:input", 6, "input", None, "activation", cannot_keep="the input"),
            _row("act:add", 7, "add + ReLU", 1.5, "activation")]
    found = culprits(rows, Net(), k=3)
    assert [(c.name, c.role, c.gain) for c in found] == [("dw", "depthwise conv", 2.0), ("head", "classifier", 2.0),
                                                        ("act:add", "residual add", 1.5)]
    assert all(c.metric == "gain_only_float" for c in found)
    everything = culprits(rows, Net(), k=10)  # no gain <= 0 and no unmeasured row is a culprit
    assert [c.name for c in everything] == ["dw", "head", "act:add", "hidden", "stem"]
    assert [c.kind for c in everything] == ["layer", "layer", "activation", "layer", "layer"]


def test_without_a_model_the_roles_come_from_the_rows():
    rows = [_row("a", 0, "Conv2d 3x3 3->8", 1.0), _row("b", 1, "Conv2d 3x3 depthwise 8->8", 3.0),
            _row("c", 2, "Conv2d 1x1 8->16", 2.0), _row("d", 3, "Linear 16->16", 0.5),
            _row("e", 4, "Linear 16->10", 0.7)]
    roles = {c.name: c.role for c in culprits(rows, None, k=5)}
    assert roles == {"a": "first conv", "b": "depthwise conv", "c": "pointwise conv", "d": "linear",
                     "e": "classifier"}


def test_without_accuracy_columns_the_lowest_sqnr_ranks_first():
    rows = [_row("stem", 0, "Conv2d", wsqnr=30.0), _row("dw", 1, "Conv2d", wsqnr=12.0),
            _row("head", 5, "Linear", wsqnr=25.0), _row("act:add", 7, "add", kind="activation", osqnr=18.0),
            _row("pw", 2, "Conv2d", wsqnr=None)]
    found = culprits(rows, Net(), k=3)
    assert [(c.name, c.metric, c.gain) for c in found] == [("dw", "weight_sqnr_db", None),
                                                          ("act:add", "output_sqnr_db", None),
                                                          ("head", "weight_sqnr_db", None)]


@pytest.mark.parametrize("op,role", [("input", "model input"), ("add + ReLU", "residual add"),
                                     ("Hardswish", "activation function (hardswish)"), ("mul", "multiply"),
                                     ("MaxPool2d, sharing conv1's range", "pooling"), ("cat", "concatenation"),
                                     ("add + adaptive_avg_pool2d + flatten", "residual add")])
def test_activation_roles(op, role):
    assert activation_role(_row("act:x", 0, op, kind="activation")) == role


def test_a_culprit_round_trips_and_bad_arguments_are_refused():
    c = culprits([_row("dw", 1, "Conv2d 3x3 depthwise 8->8", 2.0)], None)[0]
    assert Culprit.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="k=0"):
        culprits([], None, k=0)
    with pytest.raises(ValueError, match="LayerRow"):
        culprits([{"layer": "x"}], None)
    assert culprits([], None) == []


SPEC = QuantSpec("int8", granularity="per-tensor", calibration="minmax")
CONFIG = SweepConfig(model="mobilenet_v3_small", dataset="fashion-mnist", calib_size=64, eval_limit=200)


def _job(store: Store, config: SweepConfig, spec: QuantSpec, state: str, created: float, *, accuracy=True,
         only=()) -> str:
    job_id = store.submit_job(layers_config(config, spec, accuracy=accuracy, only=only), [], kind="layers")
    if state != "queued":
        store.update_job(job_id, state=state)
    with sqlite3.connect(store.path) as c:  # an explicit age: the newest is the largest, whatever the clock did
        c.execute("UPDATE jobs SET created_at=? WHERE job_id=?", (created, job_id))
    return job_id


def test_find_layers_job_takes_the_newest_finished_job_of_this_spec_on_these_numbers(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    assert find_layers_job(store, CONFIG, SPEC) is None
    old = _job(store, CONFIG, SPEC, "done", 1.0)
    # a faster latency budget and another timed batch change no number: the same measurement
    same = _job(store, SweepConfig(**{**CONFIG.to_dict(), "latency_budget_s": 1.0, "batch_size": 8}), SPEC, "done",
                2.0)
    _job(store, CONFIG, SPEC, "running", 3.0)
    _job(store, CONFIG, SPEC, "error", 4.0)
    _job(store, CONFIG, SPEC, "queued", 5.0)
    _job(store, CONFIG, SPEC.replace(calibration="entropy"), "done", 6.0)  # another spec
    _job(store, SweepConfig(**{**CONFIG.to_dict(), "calib_size": 128}), SPEC, "done", 7.0)  # other calibration
    _job(store, SweepConfig(**{**CONFIG.to_dict(), "model": "resnet18"}), SPEC, "done", 8.0)
    _job(store, CONFIG, SPEC, "done", 9.0, accuracy=False)  # no accuracy columns
    store.submit_job({"sweep": CONFIG.to_dict()}, [], kind="sweep")  # another kind
    assert find_layers_job(store, CONFIG, SPEC) == same
    assert find_layers_job(store, CONFIG, SPEC, accuracy=False) not in (None, old, same)  # the newest, without
    assert find_layers_job(store, CONFIG, SPEC.replace(granularity="per-channel")) is None


def test_a_job_of_every_row_is_preferred_to_a_newer_one_of_some_rows(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    partial = _job(store, CONFIG, SPEC, "done", 2.0, only=("features.0.0",))
    assert find_layers_job(store, CONFIG, SPEC) == partial  # better than nothing
    full = _job(store, CONFIG, SPEC, "done", 1.0)
    assert find_layers_job(store, CONFIG, SPEC) == full
    with pytest.raises(ValueError, match="QuantSpec"):
        find_layers_job(store, CONFIG, SPEC.to_dict())
