"""The post-training algorithms a spec asks for: ``QuantSpec.equalize``, ``bias_correction`` and ``rounding``.

Three ways to win back accuracy without training (:mod:`qcore.ptq` runs them):

- ``equalize``: cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and
  Bias Correction", ICCV 2019, section 4.1): consecutive layers joined by a ReLU rescaled so that their per-channel
  weight ranges match, then high biases absorbed into the next layer (section 4.2). Label ``+cle``.
- ``bias_correction``: each layer's bias corrected by the mean change its quantized weights make to its output,
  measured on the calibration images (the same paper, section 4.2, empirical). Label ``+bc``.
- ``rounding="adaround"``: each weight rounded up or down as learned on the calibration images (Nagel et al.,
  "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020), ``adaround_iters`` steps per layer on
  ``adaround_images`` images. Label ``adaround(500 it)``.

Float precisions and QAT (which trains its weights) have none of them; a spec that asks anyway is refused with
what is allowed. Pure functions of plain values, like :mod:`qcore.quant.spec_keep`.
"""

from __future__ import annotations

__all__ = ["PTQ_FIELDS", "PTQ_DEFAULTS", "ROUNDINGS", "ADAROUND_BATCH", "PAPERS", "check_ptq", "ptq_label",
           "asks_ptq"]

ROUNDINGS = ("nearest", "adaround")
# the fields and their defaults (a spec at these values asks for no algorithm; to_dict leaves them out)
PTQ_DEFAULTS: dict[str, object] = {
    "equalize": False,
    "bias_correction": False,
    "rounding": "nearest",
    "adaround_iters": 500,  # optimizer steps per layer (the paper: 10,000 on a GPU; 500 fit a 2-core CPU)
    "adaround_images": 256,  # calibration images each layer's rounding is fitted on (the paper: 1,024)
}
PTQ_FIELDS = tuple(PTQ_DEFAULTS)
ADAROUND_BATCH = 32  # images per AdaRound step: a sweep needs at least this many calibration images
MAX_ADAROUND_ITERS = 20_000
MAX_ADAROUND_IMAGES = 10_000
PAPERS = {
    "equalize": "https://arxiv.org/abs/1906.04721",
    "bias_correction": "https://arxiv.org/abs/1906.04721",
    "rounding": "https://arxiv.org/abs/2004.10568",
}


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "true", "yes", "1", "off", "false", "no", "0"):
        return value.strip().lower() in ("on", "true", "yes", "1")
    raise ValueError(f"{name}={value!r} is not allowed; allowed: on, off (true, false)")


def _count(value, name: str, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{name}={value!r} is not allowed; allowed: an integer from 1 to {high:,}")
    return value


def check_ptq(values: dict, precision: str, mode: str) -> dict:
    """``values`` (the five fields) normalised: flags as bools, counts as ints, the AdaRound numbers at their
    defaults unless it rounds; all reset for a float precision. Raises ValueError naming the field and what is
    allowed."""
    out = dict(values)
    out["equalize"] = _flag(out["equalize"], "equalize")
    out["bias_correction"] = _flag(out["bias_correction"], "bias_correction")
    if out["rounding"] not in ROUNDINGS:
        raise ValueError(f"rounding={out['rounding']!r} is not allowed; allowed: {', '.join(ROUNDINGS)}")
    if precision in ("fp32", "fp16", "bf16"):  # nothing is quantized: nothing to equalize, correct or round
        return dict(PTQ_DEFAULTS)
    if out["rounding"] == "adaround":
        out["adaround_iters"] = _count(out["adaround_iters"], "adaround_iters", MAX_ADAROUND_ITERS)
        out["adaround_images"] = _count(out["adaround_images"], "adaround_images", MAX_ADAROUND_IMAGES)
        if out["adaround_images"] < ADAROUND_BATCH:
            raise ValueError(f"adaround_images={out['adaround_images']} is fewer than one AdaRound batch "
                             f"({ADAROUND_BATCH} images); allowed: {ADAROUND_BATCH} to {MAX_ADAROUND_IMAGES:,}")
    else:  # the defaults, so that a grid over them makes one nearest spec, and replace(rounding="adaround") works
        out["adaround_iters"], out["adaround_images"] = PTQ_DEFAULTS["adaround_iters"], PTQ_DEFAULTS["adaround_images"]
    if mode == "qat" and asks_ptq(out):
        raise ValueError("equalize, bias_correction and rounding='adaround' are post-training algorithms; mode='qat' "
                         "trains the weights instead; allowed with them: mode static, dynamic, weight-only")
    return out


def asks_ptq(values) -> bool:
    """True when a spec (or a dict of its fields) asks for any of the three algorithms."""
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k)
    return bool(get("equalize") or get("bias_correction") or get("rounding") == "adaround")


def ptq_label(values) -> list[str]:
    """The label's words: ``adaround(500 it)``, ``+cle``, ``+bc`` (none for a spec that asks for none)."""
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k)
    words = []
    if get("rounding") == "adaround":
        images = get("adaround_images")
        shown = f", {images} img" if images != PTQ_DEFAULTS["adaround_images"] else ""
        words.append(f"adaround({get('adaround_iters')} it{shown})")
    if get("equalize"):
        words.append("+cle")
    if get("bias_correction"):
        words.append("+bc")
    return words
