"""Learn: quantization watched on a real tensor of the loaded model (weights or captured input activations
of one layer), then what that layer's setting does to the model's answers."""

from __future__ import annotations

import streamlit as st

from qcore.data.registry import list_datasets
from qcore.learn import words
from qcore.learn.ranges import BITS, methods_for
from qcore.quant.spec import CHOICES
from qcore.runs.sweep import SweepConfig
from qcore.service import uploads
from ui import learn_data as data
from ui import learn_view as view
from ui import settings
from ui.common import dataset_label, model_names
from ui.nav import setup
from ui.text import plain

WEIGHTS = {  # option (as in the URL): caption
    "baseline": "trained on the dataset by qcore, cached",
    "pretrained": "torchvision's ImageNet weights (ImageNet-class folders)",
    "upload": "a checkpoint of your own",
}
KINDS = {"weights": "the layer's weight tensor", "activations": "what it receives, on calibration images"}

setup("Learn")
view.open_job_setting()
st.title("Learn: watch quantization happen")
st.caption(
    "Pick a layer of a real network and look at its weights, or at the activations it receives on real images. "
    "Every number below comes from qcore's own quantization code, the code the sweeps run; 2 to 8 bits are "
    "shown by fake quantization (quantize, then dequantize, in float). The URL keeps every setting: send it "
    "to open this page on the same layer and setting."
)

left, right = st.columns([2, 1])
c1, c2 = left.columns(2)
names = model_names()
model = c1.selectbox("Model", names, index=names.index(SweepConfig().model), key="model",  # the offline default
                     bind="query-params")
datasets = [*list_datasets(), *uploads.uploaded_datasets()]
dataset = c2.selectbox("Dataset", datasets, key="dataset", bind="query-params", format_func=dataset_label,
                       help="images for the activations and the model measurement; zips are uploaded on Explore")
weights = right.radio("Weights", list(WEIGHTS), captions=list(WEIGHTS.values()), key="weights", bind="query-params",
                   horizontal=False, help="only weights that exist: a missing baseline is never trained here")
weights_value = weights
if weights == "upload":
    path = uploads.checkpoint_path(st.query_params.get("ckpt"))
    where = right.expander(f"checkpoint {path.name}" if path else "Upload a checkpoint", expanded=path is None)
    where.file_uploader("Checkpoint (.safetensors, .pt, .pth)", key="ckpt_upload", on_change=settings._on_checkpoint,
                        help="a state dict; read with weights_only=True, pickles that need code are refused")
    if err := st.session_state.get("ckpt_error"):
        right.error(plain(err))
    if path is None:
        st.info("Upload a checkpoint of this model, or choose other weights.", icon=":material/upload:")
        st.stop()
    weights_value = str(path)
elif weights == "baseline" and (missing := data.baseline_missing(model, dataset)):
    st.warning(plain(f"{missing[0].upper()}{missing[1:]}."), icon=":material/model_training:")
    st.page_link("pages/explore.py", label="Train it from Explore (Train baseline only)", icon=":material/tune:",
                 query_params={"model": model, "dataset": dataset, "weights": "baseline"})
    st.stop()

loaded, problem = data.load(model, dataset, weights_value)
if loaded is None:
    st.error(plain(f"Cannot load {model} ({weights}) with {dataset_label(dataset)}: {problem}"),
             icon=":material/block:")
    st.stop()

layer_names = dict(data.layers(model, dataset, weights_value))
first = data.default_layer(model, dataset, weights_value)
c1, c2 = left.columns([3, 2])
layer = c1.selectbox("Layer", list(layer_names), index=list(layer_names).index(first), key="layer",
                     bind="query-params", help="the model's Conv and Linear layers by module name")
c1.caption(layer_names[layer])
kind = c2.radio("Look at", list(KINDS), captions=list(KINDS.values()), key="kind", bind="query-params",
                help="the layer's weight, or the input it receives on calibration images of the dataset")
fold = True
if kind == "weights":
    fold = c1.checkbox("BatchNorm folded in", value=True, key="fold", bind="query-params",
                       help="as the sweeps quantize the weights: each BatchNorm after a convolution folded into its "
                            "weight (w × γ/√(σ²+ε) per output channel)")  # fmt: skip

c1, c2 = st.columns(2)  # two rows of two: the scheme's two buttons and the labels fit at 1024 px
c3, c4 = st.columns(2)
bits = c1.slider("Bits", BITS[0], BITS[-1], 4, key="bits", bind="query-params",
                 help="integer width; 8 is what the int8 kernels use, 4 what INT4 weights use")
scheme = c2.segmented_control("Scheme", list(CHOICES["scheme"]), default="asymmetric", key="scheme",
                              bind="query-params", required=True, help=settings.HELP["scheme"])
methods = list(methods_for(kind))
method = c3.selectbox("Calibration method", methods, key="method", bind="query-params",
                      help="how the clipping range is chosen" + (
                          "; weights are known exactly, so only min-max, percentile and MSE apply to them "
                          "(as in the sweeps)" if kind == "weights" else " from the calibration batches"))
pct = 99.99
if method == "percentile":
    pct = c4.selectbox("Percentile", settings.PERCENTILES, index=settings.PERCENTILES.index(99.99), key="pct",
                       bind="query-params", help="clip at this percentile of the values")
symmetric = scheme == "symmetric"

key = (model, dataset, weights_value, layer, kind, fold if kind == "weights" else False)
try:
    stats = data.stats(key)
except ValueError as exc:  # e.g. a layer whose input never passes through it as a module
    st.error(plain(exc), icon=":material/block:")
    st.stop()
shape = stats["shape"].split(",")[0]
what = (f"the weights of {layer} ({shape})" if kind == "weights"
        else f"the input of {layer} on {stats['images']} calibration images ({shape})")
note = data.fold_note(model, dataset, weights_value) if kind == "weights" and fold else ""
st.info(words.tensor_sentence(what, stats, note), icon=":material/visibility:")

view.the_map(key, method, bits, symmetric, pct, stats)
view.the_error(key, method, bits, symmetric, pct, stats)
gran, group = view.the_granularity(key, kind, method, bits, symmetric, pct)
mode = view.the_batches(key, kind, method, bits, symmetric, pct)
view.the_model(dict(model=model, dataset=dataset, weights=weights_value, layer=layer, kind=kind, bits=bits,
                    scheme=scheme, method=method, percentile=pct, granularity=gran, group_size=group, mode=mode,
                    fold_bn=fold), [])
