"""SweepConfig: everything about a sweep except its specs, validated when made; the CLI's and the app's
defaults come from here (:mod:`qcore.runs.sweep` runs it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from qcore.guards.limits import LIMITS, check_input_values

__all__ = ["SweepConfig"]


@dataclass(frozen=True)
class SweepConfig:
    """Everything about a sweep except the specs. The CLI's and the app's defaults come from here."""

    model: str = "mobilenet_v3_small"  # the offline default: its trained baseline ships with qcore (qcore/shipped)
    dataset: str = "fashion-mnist"
    weights: str = "auto"
    device: str = "auto"
    batch_size: int = 1
    image_size: int | None = None  # side the images are loaded (and a baseline trained) at; None: the dataset's
    input_size: int | None = None  # latency input side; None: the image size
    calib_size: int = 256
    eval_limit: int | None = 2000
    seed: int = 0
    eval_batch_size: int = 250
    calib_batch_size: int = 32
    latency_budget_s: float = 6.0
    # also time FP32 compiled by AOTInductor (the first time per model and shape: a C++ build of a minute or
    # more on 2 cores, then loaded from the build cache in about a second); CPU only
    fp32_compiled: bool = True
    # calibrate each spec that reads calibration images this many times, on disjoint seeded samples of
    # calib_size training images: the results hold the mean and the spread (qcore.metrics.draws)
    calib_draws: int = 1
    calib_list: str | None = None  # a file naming the calibration images (one training index or path a line)
    # backend="auto": measure which INT8 backend is fastest here before trusting an order, the first time a point
    # (mode, model, batch size, input size) is needed (qcore.runs.auto_probe); False: qcore's default order at once
    auto_probe: bool = True

    def __post_init__(self) -> None:
        self._check_draws()
        for name in ("batch_size", "calib_size", "eval_batch_size", "calib_batch_size", "seed", "latency_budget_s"):
            LIMITS[name].check(getattr(self, name))
        LIMITS["image_size"].check(self.image_size, none="the dataset's")
        LIMITS["input_size"].check(self.input_size, none="the image size")
        LIMITS["eval_limit"].check(self.eval_limit, none="all")
        if self.input_size or self.image_size:
            check_input_values(self.batch_size, self.input_size or self.image_size)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r} is not allowed; allowed: auto, cpu, cuda")
        if not isinstance(self.fp32_compiled, bool):
            raise ValueError(f"fp32_compiled={self.fp32_compiled!r} is not allowed; allowed: true, false")
        if not isinstance(self.auto_probe, bool):
            raise ValueError(f"auto_probe={self.auto_probe!r} is not allowed; allowed: true, false")

    def _check_draws(self) -> None:
        LIMITS["calib_draws"].check(self.calib_draws)
        if self.calib_list is not None and (not isinstance(self.calib_list, str) or not self.calib_list.strip()):
            raise ValueError(f"calib_list={self.calib_list!r} is not allowed; allowed: the path of a list file")
        if self.calib_list is not None and self.calib_draws != 1:
            raise ValueError(f"calib_draws={self.calib_draws} is not allowed with calib_list: a list fixes the "
                             "calibration images, so it is one draw; allowed: calib_draws=1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SweepConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
