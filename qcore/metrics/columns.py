"""The column key: every column of the results CSV (and the JSON's fields of the same names) with its unit, its
meaning and how a cell is written. One table, read by the CSV and JSON writers (:mod:`qcore.present.report`), the loader
that reads them back (:mod:`qcore.present.csv_load`), the HTML report's headers, the app's column help (``ui.results``),
``python -m qcore columns`` (:func:`text`) and ``docs/columns.md`` (:func:`markdown`;
``.venv/bin/python -m qcore columns --markdown > docs/columns.md`` writes it again).

How a cell is written (``Column.form``): ``time`` an ISO 8601 UTC time to the second (``2026-12-05T12:01:57Z``),
``time_ms`` to the millisecond (a timed block often lasts less than a second), ``list`` values joined by ``;``,
``flag`` ``true``/``false``, ``number`` rounded to 6 decimals. An empty cell is a value not measured (an error row, a
field older rows lack) or a setting that does not apply to the row: ``Column.applies`` names the field and the
values for which it does; elsewhere its stored placeholder (``0``, ``0.0``, ``"n/a"``) is written as an empty cell.

>>> cell("percentile", 0.0, {"calibration": "minmax"}), cell("percentile", 99.9, {"calibration": "percentile"})
('', 99.9)
>>> cell("created_at", 1796472117.25, {}), cell("draws_top1", [91.2, 91.6], {})
('2026-12-05T12:01:57Z', '91.2;91.6')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from qcore.metrics.scale import BUSY_SPREAD, LOAD_MARGIN

__all__ = ["Column", "KEY", "NAMES", "FORMS", "NA_VALUES", "column", "applies", "cell", "iso_time", "parse_time",
           "help_text", "text", "markdown"]

FORMS = ("text", "number", "count", "flag", "time", "time_ms", "list")
NA_VALUES = (0, 0.0, "n/a")  # what a setting that does not apply holds in a Result or a QuantSpec


@dataclass(frozen=True)
class Column:
    name: str
    unit: str  # "" for text
    meaning: str
    form: str = "number"  # one of FORMS
    applies: tuple[str, tuple[str, ...]] | None = None  # (field, values): the column means something only there

    @property
    def empty_when(self) -> str:
        """When the cell is empty although the row was measured, in words ("" when it is empty only if not measured)."""
        if self.applies is None:
            return ""
        name, values = self.applies
        return f"{name} is not " + (f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0])


_INT = ("int8", "int4")
_QUANT = ("fp16", "bf16", "int8", "int4")
_DRAWS = "with calibration draws (calib_draws > 1), the mean over the draws"
_C = Column
KEY: tuple[Column, ...] = (
    _C("model", "", "the torchvision classifier (its builder's name, e.g. resnet18)", "text"),
    _C("dataset", "", "the images: a built-in dataset (fashion-mnist, ...) or an uploaded folder", "text"),
    _C("weights", "", "the checkpoint the model was loaded with (a shipped baseline, a trained or uploaded file)",
       "text"),
    _C("precision", "", "the number format asked for: fp32, fp16, bf16 (float casts), int8 or int4", "text"),
    _C("granularity", "", "how many scales a weight tensor gets: per-tensor, per-channel or per-group", "text",
       ("precision", _INT)),
    _C("group_size", "weights", "consecutive input weights of one output channel that share a scale (per-group)",
       "count", ("granularity", ("per-group",))),
    _C("calibration", "", "how a quantization range is chosen: minmax, moving-average, percentile, entropy (KL) or "
       "mse", "text", ("precision", _INT)),
    _C("percentile", "percentile", "ranges clipped at this percentile of |x| (symmetric), or at the (100 - p)-th "
       "and p-th (asymmetric)", "number",
       ("calibration", ("percentile",))),
    _C("scheme", "", "symmetric (zero point 0) or asymmetric ranges: activations in static and dynamic INT8, the "
       "weights in weight-only", "text", ("precision", _INT)),
    _C("mode", "", "static (calibrated activation ranges), dynamic (ranges per batch at run time), weight-only or "
       "qat (quantization-aware training)", "text", ("precision", _INT)),
    _C("backend", "", "the engine that quantized and ran it (float, fx, pt2e, pt2e-openvino, torchao, weight-only, "
       "ort, openvino, xnnpack)", "text"),
    _C("device", "", "where it ran: cpu or cuda", "text"),
    _C("kernel", "", "native: real low-precision arithmetic; simulated: stored low-precision, computed in float",
       "text"),
    _C("engine", "", "the kernels' library and version: torch's quantized engine (x86, fbgemm, qnnpack), onednn "
       "(inductor), onnxruntime, openvino, torchao, xnnpack; empty for float casts and weight-only", "text"),
    _C("batch_size", "images", "images per timed forward pass", "count"),
    _C("input_shape", "", "the timed input's shape, N x C x H x W (e.g. 1x3x32x32)", "text"),
    _C("threads", "threads", "torch threads the latency was timed with", "count"),
    _C("top1", "%", f"share of the evaluation images whose highest-scoring class is the true one; {_DRAWS}"),
    _C("top5", "%", f"share of the evaluation images whose true class is among the 5 highest-scoring; {_DRAWS}"),
    _C("top1_delta", "percentage points", "change in top-1 against the FP32 model on the same images: exactly 100 x "
       f"(images_gained - images_lost) / eval_images; {_DRAWS}"),
    _C("agreement", "%", "share of images where this model picks the same class as FP32 (right or wrong)"),
    _C("logit_kl", "nats", "mean KL divergence of this model's softmax from FP32's, per image"),
    _C("latency_ms_p50", "ms", "median latency of one forward pass over the timed batch"),
    _C("latency_ms_p90", "ms", "90th percentile of the same timed forward passes"),
    _C("fp32_latency_ms_p50", "ms", "the FP32 eager median timed in turns with this row: speedup is this / "
       "latency_ms_p50"),
    _C("speedup", "x (ratio)", "FP32 eager median latency / this median latency, timed in turns in one process "
       "(above 1: faster)"),
    _C("best_fp32", "", "the fastest FP32 way measured in the baseline block (fp32 eager, fp32 channels-last, "
       "fp32 compiled; on a GPU also fp32 tf32, and compiled means torch.compile)", "text"),
    _C("speedup_vs_best_fp32", "x (ratio)", "speed-up against the fastest FP32 way (best_fp32) instead of eager"),
    _C("size_bytes", "bytes", "bytes of the saved deployable artifact (safetensors: weights and quantization "
       "parameters); the app shows MB = bytes / 1,000,000", "count"),
    _C("size_ratio", "x (ratio)", "size_bytes / the FP32 artifact's bytes (below 1: smaller)"),
    _C("calib_seconds", "s", "wall-clock seconds running the calibration images through the model",
       applies=("mode", ("static", "qat"))),
    _C("quantize_seconds", "s", "wall-clock seconds converting the model (casting, quantizing, exporting)",
       applies=("precision", _QUANT)),
    _C("quantized_layers", "layers", "Conv and Linear layers that hold low-precision weights", "count"),
    _C("total_layers", "layers", "Conv and Linear layers in the model", "count"),
    _C("pareto", "true/false", "no other row of the sweep is at least as good on top-1, latency and size "
       "(latencies whose 95% intervals overlap count as equal)", "flag"),
    _C("status", "", "ok, error, skipped (no backend runs it here) or cancelled", "text"),
    _C("error", "", "why the row has no numbers (status error or skipped)", "text"),
    _C("notes", "", "what the run noticed: backend choices, fallbacks, cache hits; separated by ' | '", "text"),
    _C("label", "", "the spec's short name (INT8 per-channel min-max asym static); the CLI's --spec reads it",
       "text"),
    _C("run_id", "", "this row's id", "text"),
    _C("sweep_id", "", "the job (sweep) that measured it", "text"),
    _C("created_at", "ISO 8601 UTC", "when the row was measured, to the second", "time"),
    _C("baseline_run_id", "", "run_id of the torch FP32 row its changes, agreement and speed-up were measured against",
       "text"),
    _C("build_seconds", "s", "compiling or lowering in this run (AOTInductor, ExecuTorch): the build itself the "
       "first time, loading it from the build cache after that; empty where nothing is compiled"),
    _C("first_build_seconds", "s", "what building it from scratch cost, now or when it was cached"),
    _C("timed_calls", "calls", "forward passes timed after warm-up", "count"),
    _C("latency_spread", "ratio", f"latency_ms_p90 / latency_ms_p50 of the timed calls; above {BUSY_SPREAD} the row "
       "is busy"),
    _C("latency_ms_lo", "ms", "low end of the median latency's 95% interval (order statistics over timed_calls)"),
    _C("latency_ms_hi", "ms", "high end of the median latency's 95% interval"),
    _C("load_avg", "runnable processes", "the machine's 1-minute load average around the timing"),
    _C("busy", "", f"why this timing is not to be trusted (load above the threads timed with plus {LOAD_MARGIN}, or "
       f"spread above {BUSY_SPREAD}): time it again; empty when nothing says so", "text"),
    _C("eval_images", "images", "images every accuracy number of the row was measured on", "count"),
    _C("top1_lo", "%", "low end of top-1's 95% interval: Wilson, on eval_images images; with calibration draws "
       "(calib_draws > 1), of their mean, the spread between draws included"),
    _C("top1_hi", "%", "high end of top-1's 95% interval"),
    _C("images_lost", "images", "images FP32 got right and this row wrong; with calibration draws (calib_draws > 1), "
       "the mean count per draw"),
    _C("images_gained", "images", "images this row got right and FP32 wrong; with calibration draws (calib_draws > "
       "1), the mean count per draw"),
    _C("top1_delta_lo", "percentage points", "low end of the 95% interval of top1_delta: paired, on the same images; "
       "with calibration draws (calib_draws > 1), of their mean, the spread between draws included"),
    _C("top1_delta_hi", "percentage points", "high end of the 95% interval of top1_delta"),
    _C("node_id", "", "the Ray node the latency was timed on (empty on the local worker)", "text"),
    _C("host", "", "the host the latency was timed on", "text"),
    _C("cpu_model", "", "that host's CPU", "text"),
    _C("retries", "times", "times a lost cluster node's task was submitted again before this row was measured",
       "count"),
    _C("accuracy_host", "", "the host calibration, quantization and evaluation ran on", "text"),
    _C("timed_from", "ISO 8601 UTC", "wall-clock start of the timed block, to the millisecond", "time_ms"),
    _C("timed_to", "ISO 8601 UTC", "wall-clock end of the timed block, to the millisecond", "time_ms"),
    _C("keep_float", "module names", "layers left in FP32 while the rest is quantized (a mixed-precision point), "
       "separated by ';'", "list"),
    _C("ptq_top1", "%", "top-1 of the same spec quantized after training (PTQ), the QAT row's starting point"),
    _C("control_top1", "%", "top-1 of the FP32 model fine-tuned the same way as the QAT one (the control)"),
    _C("recovered", "fraction", "(top1 - ptq_top1) / (control_top1 - ptq_top1): the share of what PTQ lost that QAT "
       "won back (1: all of it); empty when the control does not beat PTQ"),
    _C("finetune_seconds", "s", "the QAT fine-tune's training steps, on this machine under its load"),
    _C("qat_epochs", "epochs", "passes over the training split the QAT fine-tune made (fractions allowed)",
       applies=("mode", ("qat",))),
    _C("calib_draws", "draws", "calibrations on disjoint samples of calibration images, each evaluated on the same "
       "images (1: measured once)", "count"),
    _C("top1_std", "percentage points", "sample standard deviation of top-1 over the draws (empty for one draw)"),
    _C("top1_min", "%", "the lowest draw's top-1 (empty for one draw)"),
    _C("top1_max", "%", "the highest draw's top-1 (empty for one draw)"),
    _C("calib_seeds", "seeds", "draw k calibrated on the images seeded by the k-th value; separated by ';'", "list"),
    _C("keep_int8", "module names", "INT4 weight-only layers whose weights are stored in INT8 instead, separated by "
       "';'", "list"),
    _C("qat_images_won", "images", "images QAT got right and PTQ wrong, on the same images", "count"),
    _C("qat_images_lost", "images", "images PTQ got right and QAT wrong, on the same images", "count"),
    _C("qat_vs_ptq_lo", "percentage points", "low end of the paired 95% interval of top1 - ptq_top1"),
    _C("qat_vs_ptq_hi", "percentage points", "high end of the paired 95% interval of top1 - ptq_top1"),
    _C("retime_of", "", "a row of Time again: the run_id it times again (its accuracy, size and QAT figures are "
       "that row's)", "text"),
    _C("draws_top1", "%", "each calibration draw's top-1, in the order of calib_seeds, separated by ';' (top1 is "
       "their mean)", "list"),
    _C("equalize", "true/false", "cross-layer equalization before quantizing (Nagel et al. 2019): layers joined by a "
       "ReLU rescaled so their per-channel weight ranges match, high biases absorbed", "flag"),
    _C("bias_correction", "true/false", "each layer's bias corrected by the mean change its quantized weights make to "
       "its output on the calibration images (Nagel et al. 2019, empirical)", "flag"),
    _C("rounding", "", "how weights are rounded to their codes: nearest, or adaround (learned up or down per weight "
       "on the calibration images, Nagel et al. 2020)", "text", applies=("precision", ("int8", "int4"))),
    _C("adaround_iters", "steps", "AdaRound's optimizer steps per layer", "count", applies=("rounding", ("adaround",))),
    _C("adaround_images", "images", "calibration images AdaRound fits each layer's rounding on", "count",
       applies=("rounding", ("adaround",))),
    _C("ptq_algorithm_seconds", "s", "wall-clock seconds of the post-training algorithms (equalize, bias_correction, "
       "rounding) before the backend quantized, on this machine under its load"),
)  # fmt: skip
_BY_NAME = {c.name: c for c in KEY}
NAMES = frozenset(_BY_NAME)  # every column's name


def column(name: str) -> Column:
    """The key's entry for ``name``; KeyError naming the allowed columns when there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a column; allowed: {', '.join(_BY_NAME)}") from None


def applies(name: str, row: dict) -> bool:
    """Whether column ``name`` means something for ``row`` (a dict of the row's fields)."""
    cond = column(name).applies
    return cond is None or row.get(cond[0]) in cond[1]


def iso_time(t: float | None, timespec: str = "seconds") -> str:
    """Seconds since the epoch as ISO 8601 UTC, truncated to ``timespec`` (``seconds`` or ``milliseconds``).

    >>> iso_time(1796472117.9876), iso_time(1796472117.9876, "milliseconds"), iso_time(None)
    ('2026-12-05T12:01:57Z', '2026-12-05T12:01:57.987Z', '')
    """
    if t is None:
        return ""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_time(text: str | float | None) -> float | None:
    """A time cell back to seconds since the epoch: ISO 8601 (a zone-less one is UTC) or, as older CSVs and
    databases wrote it, a number of seconds; None for an empty cell.

    >>> parse_time("2026-12-05T12:01:57Z"), parse_time("1796472117.25"), parse_time("")
    (1796472117.0, 1796472117.25, None)
    """
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return float(text)
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _number(v):
    return round(v, 6) if isinstance(v, float) else v


def cell(name: str, value, row: dict):
    """How ``value`` of column ``name`` is written in the CSV (a str, or a number the writer prints): empty when
    not measured or not applicable to ``row``, times as ISO 8601 UTC, lists joined by ``;``."""
    c = column(name)
    if value is None or (not applies(name, row) and not isinstance(value, bool) and value in NA_VALUES):
        return ""
    if c.form in ("time", "time_ms"):
        return iso_time(float(value), "seconds" if c.form == "time" else "milliseconds")
    if c.form == "list":
        return value if isinstance(value, str) else ";".join(str(_number(v)) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return _number(value)


def help_text(*names: str) -> str:
    """The app's and the HTML report's help for columns ``names``: ``top1 (%): share of ...``, one per name."""
    return " · ".join(f"{n} ({column(n).unit or 'text'}): {column(n).meaning}" for n in names)


def text(names: tuple[str, ...] = ()) -> str:
    """The key as plain text for a terminal (``python -m qcore columns [NAME ...]``): each column (``names``, default
    all), its unit, its meaning and when it is empty although measured."""
    import textwrap

    out = []
    for c in map(column, names or tuple(_BY_NAME)):
        out.append(f"{c.name} ({c.unit or 'text'})")
        body = c.meaning + (f"; empty when {c.empty_when}" if c.empty_when else "")
        out += textwrap.wrap(body, 100, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(out) + "\n"


def markdown(order: tuple[str, ...] | None = None) -> str:
    """``docs/columns.md``: the key as a Markdown table, in ``order`` (default: the key's, the CSV's order)."""
    order = order or tuple(c.name for c in KEY)
    lines = [
        "# The columns of a results CSV",
        "",
        "Generated from `qcore/metrics/columns.py` (`python -m qcore columns --markdown > docs/columns.md`); the",
        "CSV, the JSON, the HTML report and the app's column help read the same table. The JSON's fields of these",
        "names hold the same values (lists as JSON lists, empty cells as null); it also holds what a table cannot",
        "(the spec, the latency samples, the manifest).",
        "",
        "- Every CSV has every column, in this order, whatever its rows: a column empty for a whole sweep stays,",
        "  so files of different sweeps and versions line up (new columns are appended at the end).",
        "- An empty cell is a number not measured (an error or skipped row, a field older rows lack) or a setting",
        "  that does not apply to the row (*empty when*).",
        "- Times are ISO 8601 UTC (`2026-12-05T12:01:57Z`); lists are separated by `;`; flags are `true`/`false`.",
        "- Percent (%) is 0-100; percentage points are differences of percents; `x (ratio)` is a ratio (2.0: twice).",
        "- CSVs and databases of older versions (times as seconds since the epoch, `0` for a setting that does",
        "  not apply, seeds separated by spaces) still load: `qcore.present.csv_load.read_csv` reads both forms.",
        "",
        f"{len(order)} columns.",
        "",
        "| column | unit | meaning | empty when |",
        "|---|---|---|---|",
    ]
    for name in order:
        c = column(name)
        meaning = c.meaning.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.unit or 'text'} | {meaning} | {c.empty_when} |")
    return "\n".join(lines) + "\n"
