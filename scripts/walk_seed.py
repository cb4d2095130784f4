"""Stored jobs for the browser walk (``scripts/walk.py``): a per-layer sensitivity job of a random-weights resnet18
(its checkpoint in the walk's home) and a sweep holding a three-point mixed-precision walk, so that the Layers
page's heat map and histogram and the Pareto chart's precision strip have something to show. Rows are inserted,
nothing is measured: the numbers are made up for the walk only and never leave its temporary home."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["seed"]


def seed(home: Path) -> dict[str, str]:
    """``{"layers": job id, "walk": job id}`` stored under ``home``."""
    import torch
    import torchvision

    from qcore.backends.layer_names import layer_names
    from qcore.layers.job import layers_config
    from qcore.layers.row import LayerRow
    from qcore.layers.rows import LayerRows
    from qcore.metrics.result import Result
    from qcore.quant.spec import FP32, QuantSpec
    from qcore.runs.store import Store
    from qcore.runs.sweep import SweepConfig

    saved = os.environ.get("QCORE_HOME")
    os.environ["QCORE_HOME"] = str(home)
    try:
        torch.manual_seed(0)
        net = torchvision.models.resnet18(num_classes=10)
        ckpt = home / "resnet18-random.pt"
        torch.save(net.state_dict(), ckpt)
        names = layer_names(net)
        store = Store()
        spec = QuantSpec("int4", granularity="per-group", group_size=64, mode="weight-only", scheme="symmetric")
        jid = store.submit_job(layers_config(SweepConfig(model="resnet18", weights=str(ckpt)), spec, accuracy=False),
                               [], kind="layers", total=len(names))
        rows = LayerRows(store.path)
        for i, n in enumerate(names):
            m = net.get_submodule(n)
            rows.add(jid, LayerRow(n, i, type(m).__name__, int(m.weight.numel()), 20.0 - i % 7, 0.01 * (1 + i % 7),
                                   15.0 - i % 5, 0.03 * (1 + i % 5), 0.99 - 0.01 * (i % 5), eval_images=100,
                                   error_images=64))
        store.update_job(jid, state="done", done=len(names), result={
            "plan": f"{len(names)} layers", "top1_fp32": 91.0, "top1_quantized": 88.0, "eval_images": 100,
            "backend": "weight-only"})  # fmt: skip
        int8 = QuantSpec("int8", granularity="per-tensor", mode="static")
        kept = [(), ("fc",), ("fc", "layer4.1.conv2")]
        wid = store.submit_job(SweepConfig(model="resnet18").to_dict(), [int8.replace(keep_float=k).to_dict()
                                                                         for k in kept])
        for i, (s, top1, ms, mb) in enumerate([(FP32, 91.0, 10.0, 44.7)] + [
                (int8.replace(keep_float=k), 88.0 + i, 4.0 + 0.5 * i, 11.2 + i) for i, k in enumerate(kept)]):
            store.add_result(Result(s, "resnet18", "fashion-mnist", backend="fx", kernel="x86", top1=top1,
                                    top1_delta=top1 - 91.0, agreement=95.0, latency_ms_p50=ms, latency_ms_p90=ms,
                                    fp32_latency_ms_p50=10.0, speedup=10.0 / ms, size_bytes=int(mb * 1e6),
                                    size_ratio=mb / 44.7, sweep_id=wid, created_at=1.0 + i))
        store.update_job(wid, state="done", done=4)
        return {"layers": jid, "walk": wid}
    finally:
        if saved is None:
            os.environ.pop("QCORE_HOME", None)
        else:
            os.environ["QCORE_HOME"] = saved
