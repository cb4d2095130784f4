"""qcore.guards.safe_checkpoint: formats from content, zip records bounded, state dicts checked."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from qcore.guards import safe_checkpoint
from qcore.guards.safe_checkpoint import CheckpointRefused
from tests import crafted as c


def test_sniff_reads_the_format_from_the_first_bytes():
    st = safetensors_bytes({"w": torch.ones(3)})
    assert safe_checkpoint.sniff(st[:16], len(st), "x") == "safetensors"
    zipped, legacy = c.torch_bytes({"w": torch.ones(3)}), c.torch_bytes({"w": torch.ones(3)}, legacy=True)
    assert safe_checkpoint.sniff(zipped[:16], len(zipped), "x") == "torch-zip"
    assert safe_checkpoint.sniff(legacy[:16], len(legacy), "x") == "torch-legacy"
    with pytest.raises(CheckpointRefused, match="^x is empty"):
        safe_checkpoint.sniff(b"", 0, "x")


def test_what_torch_save_writes_passes_check_file(tmp_path):
    path = tmp_path / "model.bin"  # any name: the content says what it is
    path.write_bytes(c.torch_bytes({f"layer{i}.weight": torch.randn(8, 8) for i in range(30)}))
    assert safe_checkpoint.check_file(path) == "torch-zip"
    path.write_bytes(c.torch_bytes({"w": torch.ones(2)}, legacy=True))
    assert safe_checkpoint.check_file(path) == "torch-legacy"


def test_check_state_finds_nan_in_views_and_big_tensors(monkeypatch):
    monkeypatch.setattr(safe_checkpoint, "_FINITE_CHUNK", 16)  # many chunks on small tensors
    base = torch.zeros(40, 30)
    base[37, 29] = float("inf")
    safe_checkpoint.check_state({"ok": torch.zeros(40, 30), "steps": torch.tensor(3)}, "f")
    with pytest.raises(CheckpointRefused, match=r"^f: tensor 'w' \(40, 30\) holds Inf values"):
        safe_checkpoint.check_state({"w": base}, "f")
    with pytest.raises(CheckpointRefused, match=r"tensor 't' \(30, 40\) holds Inf"):
        safe_checkpoint.check_state({"t": base.t()}, "f")  # not contiguous: checked row by row
    ints = torch.zeros(5, dtype=torch.int64)
    safe_checkpoint.check_state({"n": ints}, "f")  # integers cannot be NaN


def test_overlapping_views_are_refused_before_any_value_is_read():
    with pytest.raises(CheckpointRefused, match=r"tensor 'w' claims 1,000,000 values .* over 4 bytes"):
        safe_checkpoint.check_state({"w": torch.zeros(1).expand(1000, 1000)}, "f")
    shared = torch.arange(12.0)
    safe_checkpoint.check_state({"a": shared[:6], "b": shared[6:]}, "f")  # views of one storage are fine
