"""Builds cached on disk: what a backend compiles or lowers is made once per machine and reused.

An AOTInductor package or an ExecuTorch program takes seconds to minutes to build (Inductor's
code generation and a C++ compile; XNNPACK's partitioning and serialization) and milliseconds to
load. Each one is stored in ``builds/`` under qcore's data directory (``$QCORE_BUILDS`` if set),
keyed by a SHA-256 of everything that defines it:

- what is compiled: the quantized graph's code and every tensor it reads (so the FP32 weights,
  the calibration data and the spec enter through the int8 weights and the scales and zero
  points they produced), or the FP32 model's architecture and weights;
- the input shape, strides and dtype, and which dimensions are dynamic;
- the build's options (Inductor's configs, the partitioner) and the backend's recipe version;
- the library versions (torch, torchao, executorch, qcore) and the CPU (model, instruction set
  flags): generated code is specific to the ISA it was compiled for.

An entry is two files, ``<kind>-<key><suffix>`` and its ``.json`` metadata (what it cost to
build, when, and anything the builder recorded); the metadata is written last, so an entry
without it is incomplete and is rebuilt. Writes go to a temporary name and are renamed into
place, so a crash never leaves a half-written entry that looks whole. An entry that fails to
load (truncated, corrupted, made by an incompatible build) is deleted and rebuilt: a cache
problem costs a rebuild, never a crash. Least recently used entries are deleted once the folder
passes ``$QCORE_BUILDS_MAX_MB`` (default 4096 MB).

While a first build runs, the callback given to :func:`on_build` (for the length of a ``with`` block, in this
thread or task only) hears of it, so that a sweep's progress says "building the compiled package (first time,
C++)" for those minutes instead of the phase that asked for the program (evaluating, quantizing).

Example: resnet18's FP32 AOTInductor package at 1x3x32x32 took 70 s to build on this project's
2 cores (busy with other work at the time) and 0.17 s to load; a Result whose builds all came
from the cache says ``cached build: 0.2 s (1 package loaded from the cache), first build 70.0 s``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qcore.env.paths import atomic_write_bytes, subdir
from qcore.env.space import ensure_free, no_space_from

__all__ = ["DEFAULT_MAX_MB", "EXPECTED_BUILD_BYTES", "cache_dir", "graph_tensors", "digest", "environment",
           "input_signature", "BuildRecord", "summarize", "BuildCache", "on_build"]

T = TypeVar("T")
DEFAULT_MAX_MB = 4096
# room asked for before a kind's first build (an AOTInductor package of a small CNN is a few MB, a large one ~100)
EXPECTED_BUILD_BYTES = 64 * 1024 * 1024
# Told ``(kind, True)`` when a build (a cache miss) starts and ``(kind, False)`` when it ends; see on_build.
_LISTENER: contextvars.ContextVar[Callable[[str, bool], None] | None] = contextvars.ContextVar("qcore_on_build",
                                                                                               default=None)


@contextlib.contextmanager
def on_build(listener: Callable[[str, bool], None]):
    """``listener(kind, started)`` hears of every first build (not a load from the cache) made inside the block."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def _tell(kind: str, started: bool) -> None:
    listener = _LISTENER.get()
    if listener is not None:
        with contextlib.suppress(Exception):  # a progress report must never fail a build
            listener(kind, started)


def cache_dir() -> Path:
    """``$QCORE_BUILDS`` if set, else ``builds/`` in qcore's data directory (created on first use)."""
    env = os.environ.get("QCORE_BUILDS")
    if env:
        path = Path(env).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return subdir("builds")


# --- keys -----------------------------------------------------------------------------------------


def _feed(h, obj: Any) -> None:
    """Hash ``obj`` into ``h`` unambiguously (a type tag and a length before each part)."""
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.is_quantized:  # a torch.ao quantized tensor: its integers and its qparams
            _feed(h, ("qtensor", t.int_repr(), str(t.qscheme()), _qparams(t)))
            return
        t = t.cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, torch.fx.GraphModule):
        _feed(h, ("graph", obj.code, graph_tensors(obj)))
    elif isinstance(obj, torch.nn.Module):
        _feed(h, ("module", type(obj).__module__, type(obj).__qualname__, repr(obj), obj.state_dict()))
    elif isinstance(obj, Mapping):
        h.update(f"M{len(obj)}".encode())
        for k in sorted(obj, key=str):
            _feed(h, str(k))
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (str, int, float, bool)) or obj is None:
        s = repr(obj).encode()
        h.update(f"S{type(obj).__name__}{len(s)}:".encode() + s)
    elif isinstance(obj, (torch.dtype, torch.memory_format, torch.device)):
        _feed(h, str(obj))
    else:
        raise TypeError(f"cannot key a build on a {type(obj).__name__}; allowed: tensors, modules, plain data")


def _qparams(t) -> tuple:
    import torch

    if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return (t.q_per_channel_scales(), t.q_per_channel_zero_points(), t.q_per_channel_axis())
    return (t.q_scale(), t.q_zero_point())


def graph_tensors(gm) -> dict:
    """Every tensor a GraphModule holds: parameters, buffers and the constants its graph reads."""
    import torch

    out = {f"p:{k}": v for k, v in gm.named_parameters()}
    out.update({f"b:{k}": v for k, v in gm.named_buffers()})
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            obj = gm
            for part in node.target.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, torch.Tensor):
                out[f"a:{node.target}"] = obj
    return out


def digest(*parts: Any) -> str:
    """A stable SHA-256 (hex) of plain data, tensors, modules and graphs (see :func:`_feed`)."""
    h = hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """Versions and CPU a build depends on: a change in any of them makes a new key."""
    import importlib.metadata
    import platform

    import torch

    from qcore import __version__
    from qcore.env.hardware import _cpuinfo

    cpu, flags = _cpuinfo()
    env = {"qcore": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for dist in ("torchao", "executorch"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            env[dist] = importlib.metadata.version(dist)
    env["cpu"] = cpu
    env["machine"] = platform.machine()
    env["cpu_flags"] = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]
    return env


def input_signature(x) -> dict:
    """Shape, strides and dtype of an input: a package compiled for NHWC strides is another build."""
    return {"shape": list(x.shape), "stride": list(x.stride()), "dtype": str(x.dtype)}


# --- records --------------------------------------------------------------------------------------


@dataclass
class BuildRecord:
    """One build this run used: made now (``cached=False``) or loaded from the cache."""

    kind: str
    key: str
    seconds: float  # what it cost this run: the build, or the load from the cache
    first_build_seconds: float  # what building it from scratch cost (now, or when it was cached)
    cached: bool
    path: str = ""
    meta: dict = field(default_factory=dict)  # what the builder recorded (delegation, ...)
    rebuilt_because: str = ""  # why a cached entry could not be used, if one was found


def summarize(records: Iterable[BuildRecord]) -> tuple[float | None, float | None, str]:
    """``(build_seconds, first_build_seconds, note)`` over the builds of one Result.

    >>> pkg = {"unit": "package"}
    >>> r = [BuildRecord("aoti", "k1", 0.25, 30.0, True, meta=pkg),
    ...      BuildRecord("aoti", "k2", 0.15, 18.0, True, meta=pkg)]
    >>> summarize(r)[2]
    'cached build: 0.4 s (2 packages loaded from the cache), first build 48.0 s'
    """
    records = list(records)
    if not records:
        return None, None, ""
    now = sum(r.seconds for r in records)
    first = sum(r.first_build_seconds for r in records)
    hits = sum(r.cached for r in records)
    unit = records[0].meta.get("unit", "build")
    units = lambda n: f"{n} {unit}{'s' if n != 1 else ''}"
    if hits == len(records):
        note = f"cached build: {now:.1f} s ({units(hits)} loaded from the cache), first build {first:.1f} s"
    elif hits == 0:
        note = f"first build: {now:.1f} s ({units(len(records))} built and cached for the next run)"
    else:
        note = (
            f"build: {now:.1f} s ({units(hits)} loaded from the cache, {units(len(records) - hits)} built now), "
            f"first build {first:.1f} s"
        )
    rebuilt = [r.rebuilt_because for r in records if r.rebuilt_because]
    if rebuilt:
        note += f"; rebuilt a cache entry that failed to load ({rebuilt[0]})"
    return now, first, note


# --- the cache ------------------------------------------------------------------------------------


class BuildCache:
    """Get-or-build of files keyed by :func:`digest` (see the module docstring)."""

    def __init__(self, root: Path | str | None = None, max_mb: float | None = None) -> None:
        self.root = Path(root) if root else cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_mb = max_mb if max_mb is not None else float(os.environ.get("QCORE_BUILDS_MAX_MB", DEFAULT_MAX_MB))

    def key(self, kind: str, parts: Mapping[str, Any]) -> str:
        return digest(kind, parts, environment())

    def paths(self, kind: str, key: str, suffix: str) -> tuple[Path, Path]:
        return self.root / f"{kind}-{key}{suffix}", self.root / f"{kind}-{key}.json"

    def get_or_build(
        self,
        kind: str,
        parts: Mapping[str, Any],
        build: Callable[[Path], dict | None],
        load: Callable[[Path], T],
        suffix: str = ".bin",
        expected_bytes: int | None = None,
    ) -> tuple[T, BuildRecord]:
        """Load the entry for ``(kind, parts)``, or ``build(tmp_path)`` it, store it and load it.

        ``build`` writes the artifact to the path it is given and may return metadata (JSON-able)
        that comes back in ``record.meta`` on every later hit; ``load`` turns the file into the
        object to use. A cached entry that fails to load is deleted and rebuilt. Before building, the disk must
        have room for ``expected_bytes`` (default: the largest entry of this kind so far, else
        :data:`EXPECTED_BUILD_BYTES`): :class:`~qcore.env.space.NoSpace` says so, and a build that runs out of
        space anyway raises the same (not the compiler's own error).
        """
        key = self.key(kind, parts)
        path, meta_path = self.paths(kind, key, suffix)
        rebuilt = ""
        if path.exists() and meta_path.exists():
            start = time.perf_counter()
            try:
                meta = json.loads(meta_path.read_text())
                obj = load(path)
            except Exception as exc:  # a bad entry costs a rebuild, never the run
                rebuilt = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                self._remove(path, meta_path)
            else:
                now = time.time()
                with contextlib.suppress(OSError):
                    os.utime(path, (now, now))  # least recently used is evicted first
                seconds = time.perf_counter() - start
                first = float(meta.get("build_seconds", seconds))
                return obj, BuildRecord(kind, key, seconds, first, True, str(path), meta.get("extra", {}))
        # the same suffix: some builders insist on theirs (AOTInductor writes only to a .pt2 path)
        tmp = path.with_name(f".{kind}-{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
        start = time.perf_counter()
        needed = expected_bytes if expected_bytes is not None else self._expected(kind)
        ensure_free(self.root, needed, f"a {kind} build")
        _tell(kind, True)
        try:
            extra = build(tmp) or {}
            with open(tmp, "rb") as fh:  # what was written reaches the disk before it is renamed into place
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except Exception as exc:
            if full := no_space_from(exc, self.root, needed, f"a {kind} build"):
                raise full from exc
            raise
        finally:
            _tell(kind, False)
            with contextlib.suppress(OSError):
                tmp.unlink()
        built = time.perf_counter() - start
        meta = {"kind": kind, "key": key, "build_seconds": built, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "environment": environment(), "extra": extra}  # fmt: skip
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1, default=str).encode())
        load_start = time.perf_counter()
        obj = load(path)
        seconds = built + time.perf_counter() - load_start
        self.prune(keep={path, meta_path})
        # first_build_seconds == seconds exactly marks a build made now (report.build_text relies on it)
        return obj, BuildRecord(kind, key, seconds, seconds, False, str(path), extra, rebuilt)

    def _expected(self, kind: str) -> int:
        """The bytes a new ``kind`` build is expected to take: the largest such entry so far, else a default."""
        sizes = [p.stat().st_size for p in self.entries() if p.name.startswith(f"{kind}-")]
        return max(sizes, default=EXPECTED_BUILD_BYTES)

    def entries(self) -> list[Path]:
        """The artifact files of complete entries (those with their metadata)."""
        return sorted(p for p in self.root.iterdir() if p.suffix != ".json" and p.with_suffix(".json").exists()
                      and not p.name.startswith("."))  # fmt: skip

    def prune(self, keep: set[Path] = frozenset()) -> None:
        """Delete least recently used entries until the folder is under ``max_mb``."""
        files = [p for p in self.root.iterdir() if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        if total <= self.max_mb * 1e6:
            return
        for p in sorted(self.entries(), key=lambda p: p.stat().st_mtime):
            if total <= self.max_mb * 1e6:
                break
            if p in keep:
                continue
            total -= p.stat().st_size
            self._remove(p, p.with_suffix(".json"))

    @staticmethod
    def _remove(*paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(OSError):
                p.unlink()
