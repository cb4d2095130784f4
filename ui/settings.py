"""The setting widgets of the Explore and Sweep pages, each bound to a URL query parameter.

``bind="query-params"`` keeps every value in the URL (a value equal to its default is left out),
so a link reproduces the setup. Defaults come from :class:`qcore.runs.sweep.SweepConfig`,
:class:`qcore.quant.spec.QuantSpec` and :data:`qcore.quant.spec.DEFAULT_GRID`, the same ones the CLI uses; the
datasets from :func:`qcore.data.list_datasets`; uploads are checked by :mod:`qcore.service.uploads`.
"""

from __future__ import annotations

import streamlit as st

from qcore.data.registry import list_datasets
from qcore.env.gpu import ability_text, detect_gpu
from qcore.guards.limits import LIMITS
from qcore.quant.spec import CHOICES, DEFAULT_GRID, GROUP_SIZES, QAT_DEFAULTS, QuantSpec, allowed_modes
from qcore.runs.sweep import SweepConfig
from qcore.service import uploads

from . import upload_panel
from .common import dataset_image_size, dataset_label, hardware, input_problem, label_of, model_info, model_names
from .text import plain

__all__ = ["UPLOAD", "UPLOAD_LABEL", "WEIGHTS", "HELP", "PERCENTILES", "QAT_EPOCHS", "config_widgets", "spec_single",
           "qat_epochs_input"]

_D = SweepConfig()  # the CLI's defaults
_S = QuantSpec()
PERCENTILES = [99.0, 99.9, 99.99, 99.999]
UPLOAD = "__upload__"
UPLOAD_LABEL = "upload a zip of class folders ..."
WEIGHTS = {  # option (as in the URL): caption
    "auto": "pretrained if the classes are ImageNet's, else the baseline",
    "pretrained": "torchvision's ImageNet weights",
    "baseline": "trained on the dataset by qcore, cached",
    "upload": "a checkpoint of your own",
}
HELP = {
    "precision": "number format of the weights (and activations in static/dynamic INT8)",
    "granularity": "how many scales: one per tensor, one per output channel, or one per group of weights",
    "calibration": "how the clipping range is chosen from calibration images (or from the weights)",
    "scheme": "symmetric: zero-point 0; asymmetric: a zero-point shifts the range to fit the data",
    "mode": "static: weights and activations int8, ranges calibrated ahead; dynamic: Linear layers only, "
    "activation ranges taken per batch; weight-only: weights stored low-bit, computed in FP32; qat: static INT8 "
    "(or INT4 weight-only) whose ranges and weights are fine-tuned with fake quantization (quantization-aware "
    "training), measured against PTQ and an FP32 model fine-tuned the same way",
    "backend": "which implementation runs the spec; auto picks the fastest measured on this machine, else the "
    "first in qcore's order that can, and the run's notes say which and why. pt2e-openvino runs the pt2e backend's "
    "quantized graph (qcore's ranges and weight codes) on OpenVINO's kernels; openvino lets NNCF choose its own "
    "ranges",
}


def _range(name: str) -> tuple:
    """``(min, max)`` of a number input, from :data:`qcore.guards.limits.LIMITS` (the CLI's ranges too)."""
    lim = LIMITS[name]
    return lim.kind(lim.lo), lim.kind(lim.hi)


def _on_checkpoint() -> None:
    """Store an uploaded checkpoint (checked by :mod:`qcore.service.uploads`) and name it in the URL, or say why not."""
    f = st.session_state.get("ckpt_upload")
    st.session_state.pop("ckpt_error", None)
    if f is None:
        return
    try:  # save_checkpoint turns every failure into an UploadError naming f.name (never a server path)
        path, _, _ = uploads.save_checkpoint(f.getvalue(), f.name)
    except Exception as exc:
        st.session_state["ckpt_error"] = str(exc) if isinstance(exc, uploads.UploadError) else (
            f"{f.name} could not be stored: {type(exc).__name__}")
        return
    st.query_params["ckpt"] = path.name


def _on_dataset() -> None:
    """Unpack an uploaded zip of class folders (checked by :mod:`qcore.service.uploads`) and select it, or say why
    not."""
    f = st.session_state.get("dataset_upload")
    st.session_state.pop("dataset_error", None)
    if f is None:
        return
    try:  # save_dataset turns every failure into an UploadError naming f.name (never a server path)
        name = uploads.save_dataset(f.getvalue(), f.name)
    except Exception as exc:
        st.session_state["dataset_error"] = str(exc) if isinstance(exc, uploads.UploadError) else (
            f"{f.name} could not be stored: {type(exc).__name__}")
        return
    st.session_state["dataset"] = name


def config_widgets() -> tuple[dict, list[str]]:
    """Model, data, weights, device and timing settings: ``(SweepConfig kwargs, problems)``."""
    problems: list[str] = []
    names = model_names()
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox(
        "Model",
        names,
        index=names.index(_D.model),
        key="model",
        bind="query-params",
        help="any torchvision image classifier; its head is sized to the dataset's classes",
    )
    info = model_info(model)
    if info and info["params"]:
        c1.caption(
            f"{info['params'] / 1e6:.1f} M parameters · {info['gflops'] or 0:.2f} GFLOPs at "
            f"{info['default_input_size']} px (ImageNet head)"
        )
    datasets = [*list_datasets(), *uploads.uploaded_datasets(), UPLOAD]
    dataset = c2.selectbox(
        "Dataset",
        datasets,
        key="dataset",
        bind="query-params",
        format_func=lambda d: UPLOAD_LABEL if d == UPLOAD else dataset_label(d),
        help="Fashion-MNIST works offline; CIFAR-10 downloads once; a zip holds <class>/<image>",
    )
    if dataset == UPLOAD:
        c2.file_uploader(
            "Zip of class folders",
            key="dataset_upload",
            on_change=_on_dataset,
            help="checked by content: a zip archive, paths inside its folder, size limited",
        )
        if err := st.session_state.get("dataset_error"):
            c2.error(plain(err))
        problems.append("choose a dataset, or upload a zip of class folders")
    elif uploads.dataset_folder(dataset) is not None:
        problems += upload_panel.dataset(c2, dataset)
    weights = c3.radio(
        "Weights",
        list(WEIGHTS),
        captions=list(WEIGHTS.values()),
        key="weights",
        bind="query-params",
        help="auto is the CLI's default; a baseline is trained once and cached",
    )
    weights_value, path = weights, None
    if weights == "upload":
        c3.file_uploader(
            "Checkpoint (.safetensors, .pt, .pth)",
            key="ckpt_upload",
            on_change=_on_checkpoint,
            help="a state dict; read with weights_only=True, pickles that need code are refused",
        )
        if err := st.session_state.get("ckpt_error"):
            c3.error(plain(err))
        path = uploads.checkpoint_path(st.query_params.get("ckpt"))
        if path is None:
            problems.append("upload a checkpoint, or choose other weights")
        else:
            weights_value = str(path)

    c4, c5, c7, c6 = st.columns(4)
    device = c4.selectbox(
        "Device",
        CHOICES["device"],
        key="device",
        bind="query-params",
        help=f"auto: the GPU when there is one, else the CPU. {ability_text(detect_gpu())}",
    )
    hw, _ = hardware()
    if device == "cuda" and not hw.gpu:
        problems.append("device 'cuda' was chosen but this machine has no CUDA GPU; choose cpu or auto")
    batch = c5.number_input(
        "Batch size (latency)",
        *_range("batch_size"),
        _D.batch_size,
        key="batch",
        bind="query-params",
        help="images per forward pass when timing; accuracy uses batches of 250",
    )
    native = dataset_image_size(dataset) if dataset != UPLOAD else None
    image = c7.number_input(
        "Image size (px)",
        *_range("image_size"),
        _D.image_size,
        key="imgsize",
        bind="query-params",
        placeholder=f"{native} px" if native else "the data's",  # short: a quarter of 1024 px shows ~8 characters
        help="side the images are resized to for calibration, accuracy and a baseline's training "
        "(a new size trains its own baseline); empty: the dataset's",
    )
    images = int(image) if image else native
    size = c6.number_input(
        "Latency input size (px)",
        *_range("input_size"),
        _D.input_size,
        key="size",
        bind="query-params",
        placeholder=f"{images} px" if images else "as images",
        help="side of the random images timed; empty: the image size",
    )
    if weights == "upload" and path is not None:
        problems += upload_panel.checkpoint(c3, path, model, dataset, images)
    if images and (why := input_problem(model, images)):
        problems.append(f"{dataset_label(dataset)} images at {images} px: {why}. "
                        "Set 'Image size (px)' to a size it accepts")
    elif size and size != images and (why := input_problem(model, int(size))):
        problems.append(f"latency input size {size} px does not fit: {why}")

    with st.expander("Advanced: calibration and evaluation sizes, draws, seed, timing budget, compiled FP32, "
                     "auto's measuring"):
        a1, a2, a3, a4 = st.columns(4)
        calib = a1.number_input(
            "Calibration images",
            *_range("calib_size"),
            _D.calib_size,
            key="calib",
            bind="query-params",
            help="drawn (seeded) from the training split",
        )
        evals = a2.number_input(
            "Evaluation images (0: all)",
            0,  # 0 stands for all
            LIMITS["eval_limit"].hi,
            _D.eval_limit,
            key="eval",
            bind="query-params",
            help="drawn (seeded) from the test split",
        )
        seed = a3.number_input("Seed", *_range("seed"), _D.seed, key="seed", bind="query-params")
        budget = a4.number_input(
            "Timing budget per spec (s)",
            *_range("latency_budget_s"),
            _D.latency_budget_s,
            step=0.5,
            key="budget",
            bind="query-params",
            help="seconds of interleaved timing",
        )
        compiled = st.checkbox(
            "Also time FP32 compiled (AOTInductor)",
            _D.fp32_compiled,
            key="compiled",
            bind="query-params",
            help="the fastest FP32 is the fairer reference for a speed-up; the first build per model and input "
            "shape is a C++ compile of a minute or more (then cached); CPU only",
        )
        probe = st.checkbox(
            "Let auto measure which INT8 backend is fastest here first",
            _D.auto_probe,
            key="probe",
            bind="query-params",
            help="the first time a model, batch size and input size runs here, auto builds and times each INT8 "
            "backend for a few seconds and remembers the fastest; off: qcore's default order at once",
        )
        draws = _draws_widget()
    if uploads.all_uploads():
        upload_panel.manage()
    config = dict(model=model, dataset=dataset, weights=weights_value, device=device, batch_size=int(batch),
                  image_size=int(image) if image else None, input_size=int(size) if size else None,
                  calib_size=int(calib),
                  eval_limit=int(evals) or None, seed=int(seed), latency_budget_s=float(budget),
                  fp32_compiled=bool(compiled), auto_probe=bool(probe))  # fmt: skip
    config["calib_draws"] = draws
    return config, problems


_SPEC_KEYS = {"granularity": "granularity", "calibration": "calibration", "scheme": "scheme"}


def _modes_now() -> list[str]:
    """The modes the Explore spec's precision (with its granularity, calibration, scheme) allows, by the spec's
    rules (:func:`qcore.quant.spec.allowed_modes`)."""
    state = st.session_state
    fields = {name: state[key] for name, key in _SPEC_KEYS.items() if key in state}
    if fields.get("granularity") == "per-group":
        fields["group_size"] = DEFAULT_GRID["group_size"][0]
    if fields.get("calibration") == "percentile":
        fields["percentile"] = DEFAULT_GRID["percentile"][0]
    return allowed_modes(state.get("precision", _S.precision), **fields)


def _fit_mode() -> None:
    """After a precision change, a mode the spec allows (INT4 -> weight-only). Other changes that no mode of
    theirs allows (per-group in static INT8) keep their message, which says why."""
    modes = _modes_now()
    if modes and st.session_state.get("mode") not in modes:
        st.session_state["mode"] = modes[0]


def _draws_widget() -> int:
    """How many disjoint calibration samples each static INT spec is calibrated on (qcore.metrics.draws)."""
    b1, _ = st.columns([1, 3])
    return int(b1.number_input(
        "Calibration draws",
        *_range("calib_draws"),
        _D.calib_draws,
        key="draws",
        bind="query-params",
        help="calibrate each static INT spec this many times, on disjoint seeded samples of the calibration "
        "images, each evaluated on the same images: the result is the mean top-1 with its min-max as an error "
        "bar (draws x calibration images must fit in the training split). Costs that many calibrations and "
        "evaluations; latency and size are measured once",
    ))  # fmt: skip


def spec_single() -> dict:
    """One QuantSpec's fields (Explore). Changing the precision moves the mode to one the spec allows; a link
    that names a precision and no mode opens on the first mode it allows."""
    c1, c2, c3, c4 = st.columns(4)
    precision = c1.selectbox(
        "Precision",
        CHOICES["precision"],
        index=CHOICES["precision"].index(_S.precision),
        format_func=label_of,
        key="precision",
        bind="query-params",
        on_change=_fit_mode,
        help=HELP["precision"],
    )
    is_float = precision in ("fp32", "fp16", "bf16")
    granularity = c2.selectbox(
        "Granularity",
        CHOICES["granularity"],
        index=CHOICES["granularity"].index(_S.granularity),
        key="granularity",
        bind="query-params",
        disabled=is_float,
        help=HELP["granularity"],
    )
    group = DEFAULT_GRID["group_size"][0]  # (QuantSpec() normalises an unused group size to 0)
    if granularity == "per-group" and not is_float:
        group = c2.selectbox(
            "Group size",
            GROUP_SIZES,
            index=GROUP_SIZES.index(group),
            key="group",
            bind="query-params",
            help="weights that share one scale, along the input axis",
        )
    calibration = c3.selectbox(
        "Calibration",
        CHOICES["calibration"],
        format_func=label_of,
        key="calibration",
        bind="query-params",
        disabled=is_float,
        help=HELP["calibration"],
    )
    percentile = DEFAULT_GRID["percentile"][0]  # (and an unused percentile to 0.0)
    if calibration == "percentile" and not is_float:
        percentile = c3.number_input(
            "Percentile",
            LIMITS["percentile"].lo + 0.01,  # the lower end is excluded
            LIMITS["percentile"].hi,
            percentile,
            step=0.01,
            format="%.3f",
            key="pct",
            bind="query-params",
            help="clip at this percentile of |x|",
        )
    scheme = c4.selectbox(
        "Scheme",
        CHOICES["scheme"],
        index=CHOICES["scheme"].index(_S.scheme),
        key="scheme",
        bind="query-params",
        disabled=is_float,
        help=HELP["scheme"],
    )
    c5, c6, c7, _ = st.columns(4)
    if "mode" not in st.session_state and "mode" not in st.query_params:  # a new page: the first mode it allows
        st.session_state["mode"] = (_modes_now() or [_S.mode])[0]
    mode = c5.selectbox("Mode", CHOICES["mode"], key="mode", bind="query-params", disabled=is_float, help=HELP["mode"])
    backend = c6.selectbox("Backend", CHOICES["backend"], key="backend", bind="query-params", help=HELP["backend"])
    qat = qat_epochs_input(c7, key="qat_epochs") if mode == "qat" and not is_float else {}
    return qat | dict(
        precision=precision,
        granularity=granularity,
        group_size=group,
        calibration=calibration,
        percentile=percentile,
        scheme=scheme,
        mode=_S.mode if is_float else mode,  # a float cast has no mode (and nothing for QAT to train)
        backend=backend,
    )


QAT_EPOCHS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0)


def qat_epochs_input(where, key: str) -> dict:
    """The QAT fine-tune's length (the rest of its schedule keeps qcore.quant.spec.QAT_DEFAULTS, documented there)."""
    epochs = where.selectbox(
        "QAT epochs", QAT_EPOCHS, index=QAT_EPOCHS.index(QAT_DEFAULTS["qat_epochs"]), key=key,
        bind="query-params",
        help="passes over the training split for the QAT fine-tune and its FP32 control (fractions: that share "
             f"of the steps); learning rate {QAT_DEFAULTS['qat_lr_scale']:g} x the baseline recipe's, BatchNorm "
             f"frozen after {QAT_DEFAULTS['qat_freeze_bn']:g} and ranges after "
             f"{QAT_DEFAULTS['qat_freeze_observers']:g} of the steps. Cached: a second run loads it",
    )  # fmt: skip
    return {"qat_epochs": epochs}
