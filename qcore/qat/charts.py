"""QAT's figures (plotly, imported when drawn, so ``import qcore`` stays lean): the fine-tune curve of a QAT row
against its FP32 control, and the QAT points of a Pareto chart with a marker of their own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["QAT_SYMBOL", "curve_figure", "add_qat_points", "qat_hover_line", "qat_vs_ptq_text"]

QAT_SYMBOL = "star"  # PTQ points are circles, rows timed while busy diamonds (qcore.present.chart_scale.symbol)


def qat_vs_ptq_text(r) -> str:
    """``QAT - PTQ +1.00 points, 95% +0.38 to +1.64, on 2,000 images (30 won, 10 lost)``: the paired change
    (:func:`qcore.qat.measure.qat_vs_ptq`); "" for a row stored before it was measured."""
    if r.qat_vs_ptq_lo is None or r.qat_vs_ptq_hi is None or r.top1 is None or r.ptq_top1 is None:
        return ""
    n = f" on {r.eval_images:,} images" if r.eval_images else ""
    return (f"QAT - PTQ {r.top1 - r.ptq_top1:+.2f} points, 95% {r.qat_vs_ptq_lo:+.2f} to {r.qat_vs_ptq_hi:+.2f}{n} "
            f"({r.qat_images_won:,} won, {r.qat_images_lost:,} lost)")


def qat_hover_line(r) -> str:
    """``QAT 1 epoch: PTQ 87.10%, control 88.95%, recovered 0.62; QAT - PTQ +1.85 points, 95% ... (37 won, 0 lost);
    fine-tune 412 s``: recovered with the paired change it is made of, and the images that change rests on."""
    def pct(v):
        return "n/a" if v is None else f"{v:.2f}%"

    rec = "n/a (the control does not beat PTQ)" if r.recovered is None else f"{r.recovered:.2f}"
    paired = qat_vs_ptq_text(r)
    secs = "" if r.finetune_seconds is None else f"{'; ' if paired else ', '}fine-tune {r.finetune_seconds:.0f} s"
    return (f"QAT {r.spec.qat_epochs:g} epoch: PTQ {pct(r.ptq_top1)}, control {pct(r.control_top1)}, "
            f"recovered {rec}" + (f"; {paired}" if paired else "") + secs)


def add_qat_points(fig, rows: Sequence, x: str, max_size: float, hover: Callable) -> None:
    """One trace of QAT rows (stars, sized by model size like the others) on a Pareto figure."""
    import plotly.graph_objects as go

    if not rows:
        return
    fig.add_trace(go.Scatter(
        x=[getattr(r, x) for r in rows], y=[r.top1 for r in rows], mode="markers", name="INT8 QAT",
        marker=dict(symbol=QAT_SYMBOL, size=[10 + 30 * (r.size_bytes or 0) / max_size for r in rows],
                    line=dict(width=1), color="#9467bd"),
        customdata=[[r.run_id] for r in rows],
        text=[hover(r) + "<br>" + qat_hover_line(r) for r in rows], hovertemplate="%{text}<extra></extra>",
    ))  # fmt: skip


def curve_figure(r):
    """Top-1 of the QAT model and of its FP32 control over the fine-tune (left axis), their training losses
    (right axis, dotted), and the PTQ top-1 the QAT model started from as a dashed line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = {"qat": "#9467bd", "control": "#8c8c8c"}
    names = {"qat": "QAT (fake-quantized)", "control": "FP32 control"}
    for which in ("qat", "control"):
        c = r.qat_curve.get(which) or {}
        if not c.get("epoch"):
            continue
        fig.add_trace(go.Scatter(x=c["epoch"], y=c["top1"], mode="lines+markers", name=f"{names[which]} top-1",
                                 line=dict(color=colors[which])))
        loss = [(e, v) for e, v in zip(c["epoch"], c["train_loss"]) if v is not None]
        if loss:
            fig.add_trace(go.Scatter(x=[e for e, _ in loss], y=[v for _, v in loss], mode="lines+markers",
                                     name=f"{names[which]} train loss", yaxis="y2",
                                     line=dict(color=colors[which], dash="dot")))
    if r.ptq_top1 is not None:
        fig.add_hline(y=r.ptq_top1, line_dash="dash", line_color="#d62728",
                      annotation_text=f"PTQ {r.ptq_top1:.2f}%", annotation_position="bottom right")
    n = r.qat_curve.get("eval_images")
    fig.update_layout(
        xaxis_title="epochs of fine-tuning", yaxis_title=f"top-1 % ({n} test images)" if n else "top-1 %",
        yaxis2=dict(title="train loss (mean since the previous point)", overlaying="y", side="right",
                    showgrid=False),
        legend=dict(orientation="h", y=1.15), margin=dict(l=40, r=40, t=40, b=40), height=340,
    )  # fmt: skip
    return fig
