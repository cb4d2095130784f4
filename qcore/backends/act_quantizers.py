"""The activation quantizers a static INT8 build inserts between the layers, named, and how to keep one in FP32.

torch.ao's FX flow puts an observer (at convert: a quantize step, or a quantized op's output scale) on every
tensor an int8 op reads or writes: the model input, each Conv/Linear output, and the outputs of the ops between
the layers: residual additions (``add + ReLU`` in resnet18), activation functions (``Hardswish``), the
squeeze-excitation's ``mul``. ``keep_float`` on layer names cannot reach the ones between layers: with 20 of
resnet18's 21 Conv/Linear layers in FP32, the old entropy calibration still lost almost all its 3.6 points
(its search clipped the model input's bright pixels, issue 24); this module makes them rows of their own.

:func:`quantizers` lists them from a prepared FX graph (:func:`qcore.backends.fx_int8.model_quantizers`: of a
model prepared for static INT8), one :class:`ActQuantizer` per observer instance (ops
that share their input's range, such as max-pooling and flatten, share its observer and are the same
quantizer), leaving out those whose tensor is a Conv/Linear layer's output (the layer's own row). Each is named
``act:`` + where it is: ``act:input`` (the model input), ``act:layer1.0.relu`` (the module whose output it
quantizes: resnet18's first residual ``add + ReLU``), ``act:features.3.add`` (a function called in module
``features.3``; a second call in the same module is ``add_1``).

Keeping one in FP32 (``QuantSpec.keep_float=("act:layer1.0.relu",)``) runs the op(s) that produce its tensor
(its *producers*: ``add`` and ``ReLU`` for a fused ``add + ReLU``) in FP32, as keeping a layer runs that layer
in FP32: the tensor is not quantized there. An int8 op that reads it (the next block's convolution) still
needs int8 input and quantizes it with an observer of its own, as after a layer kept in FP32; the tensor is
float all the way only where every reader is FP32 too. On fx the producers get no qconfig
(``QConfigMapping.set_module_name`` for a module, ``set_module_name_object_type_order`` for a function call,
:func:`keep_in_mapping`); on pt2e the exported graph's nodes of the same producers (matched by module path,
operation and call order, :func:`pt2e_nodes`) are annotated "not quantized" before the X86 Inductor quantizer
annotates the rest, so the patterns that contain them are not formed (:class:`KeepNodesFloat`). Other
backends refuse such a spec (:func:`qcore.backends.base.keep_float_problem`). The model input cannot be kept:
its quantizer is the first layer's input (keep that layer in FP32 instead); its row is listed, with why.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from qcore.backends.base import LAYER_TYPES
from qcore.quant.spec_keep import ACT_PREFIX, is_act  # one prefix for the spec, the layers and the backends

__all__ = ["ACT_PREFIX", "INPUT", "is_act", "Producer", "ActQuantizer", "quantizers", "keep_in_mapping",
           "still_quantized", "fed_int8", "NOT_KEPT", "not_kept_note", "check_act_names", "pt2e_nodes",
           "KeepNodesFloat"]

INPUT = ACT_PREFIX + "input"
_FAMILY = {"iadd": "add", "add": "add", "radd": "add", "imul": "mul", "mul": "mul", "rmul": "mul",
           "isub": "sub", "sub": "sub", "cat": "cat", "concat": "cat"}


@dataclass(frozen=True)
class Producer:
    """One op that writes a quantizer's tensor: a module call (``target`` its path) or a function call
    (``target`` its name, ``scope`` the module it is called in); ``fx_index``: its position among the calls of
    the same function in ``scope`` in the prepared FX graph (the order ``set_module_name_object_type_order``
    counts); ``call``: its position among the calls of the same module (or function in ``scope``) in the traced
    model before fusion (the order the exported graph has)."""

    op: str  # "call_module" or "call_function"
    target: str
    node: str  # its FX node's name (the trace's: the same in every build of the model)
    scope: str = ""
    fx_index: int = 0
    call: int = 0
    fn: object = None

    @property
    def family(self) -> str:
        return _FAMILY.get(self.target, self.target)


@dataclass(frozen=True)
class ActQuantizer:
    """One activation quantizer: ``name`` (``act:...``), what it quantizes (``op``: ``add + ReLU``), its
    producers (every op whose output this observer instance quantizes, and the unobserved ops before them: a
    fused ``add`` before its ``ReLU``, and the ops sharing the range, such as the pooling after it), the first FX
    node it observes and the observer module's attribute in the prepared graph; ``problem``: why it cannot be
    kept in FP32 (None when it can)."""

    name: str
    op: str
    producers: tuple[Producer, ...]
    node: str
    observer: str
    position: int
    problem: str | None = None
    call: int = 0  # which call of the (shared) observer module reads this quantizer's first own tensor


def _is_observer(m) -> bool:
    from torch.ao.quantization.quantize import _is_activation_post_process

    return _is_activation_post_process(m)


def _is_layer(gm: nn.Module, node) -> bool:
    if node.op != "call_module":
        return False
    m = gm.get_submodule(node.target)
    return isinstance(m, LAYER_TYPES) or (isinstance(m, nn.Sequential) and len(m) and isinstance(m[0], LAYER_TYPES))


def _fn_name(fn) -> str:
    return getattr(fn, "__name__", str(fn)).strip("_")


def _unfused_calls(model: nn.Module) -> dict[str, int]:
    """Node name -> its call position (module calls per module; function calls per function and scope) in
    the model traced as torch.ao traces it, before fusion: the names survive into the prepared graph."""
    from torch.ao.quantization.fx.tracer import QuantizationTracer

    tracer = QuantizationTracer([], [])
    graph = tracer.trace(model)
    seen: dict[tuple, int] = {}
    out = {}
    for node in graph.nodes:
        if node.op == "call_module":
            key = ("m", node.target)
        elif node.op == "call_function":
            scope = tracer.node_name_to_scope.get(node.name, ("", None))[0]
            key = ("f", scope, _FAMILY.get(_fn_name(node.target), _fn_name(node.target)))
        else:
            continue
        out[node.name] = seen.get(key, 0)
        seen[key] = out[node.name] + 1
    return out


def quantizers(prepared: torch.fx.GraphModule, model: nn.Module | None = None) -> list[ActQuantizer]:
    """The activation quantizers of a prepared FX graph in graph order (see the module); ``model`` (the model
    it was prepared from) gives the call order the exported graph matches."""
    scope = prepared.meta["_observed_graph_module_attrs"].node_name_to_scope
    calls = _unfused_calls(model) if model is not None else {}
    fx_index: dict[str, int] = {}
    counters: dict[tuple, int] = {}
    module_calls: dict[str, int] = {}
    for node in prepared.graph.nodes:
        if node.op == "call_function":
            key = (scope.get(node.name, ("", None))[0], node.target)
            fx_index[node.name] = counters.get(key, 0)
            counters[key] = fx_index[node.name] + 1
        elif node.op == "call_module" and not _is_observer(prepared.get_submodule(node.target)):
            module_calls[node.target] = module_calls.get(node.target, 0) + 1
    groups: dict[int, list] = {}  # observer instance -> [(position, observer node, its source)], graph order
    for pos, node in enumerate(prepared.graph.nodes):
        if node.op == "call_module" and _is_observer(obs := prepared.get_submodule(node.target)):
            if getattr(obs, "dtype", None) in (torch.quint8, torch.qint8):  # (a float placeholder quantizes nothing)
                groups.setdefault(id(obs), []).append((pos, node, node.args[0]))
    out: list[ActQuantizer] = []
    names: set[str] = set()
    for calls_of in groups.values():
        pos, node, first = calls_of[0]
        if not isinstance(first, torch.fx.Node) or first.op == "get_attr":
            continue
        if first.op == "placeholder":
            out.append(ActQuantizer(INPUT, "input", (), first.name, node.target, pos, problem=(
                "the input's quantizer is the int8 input of the layers that read it: keep those layers in FP32 to "
                "leave the input float")))
            names.add(INPUT)
            continue
        shared_with = first.target if _is_layer(prepared, first) else None
        # a layer's output is the layer's own row; the ops that share its range (max-pooling after conv1) are not
        own = [(i, src) for i, (_, _, src) in enumerate(calls_of)
               if isinstance(src, torch.fx.Node) and src.op not in ("placeholder", "get_attr")
               and not _is_layer(prepared, src)]
        if not own:
            continue
        producers, problem = _producers(prepared, [src for _, src in own], scope, fx_index, calls, module_calls)
        if not producers:
            continue
        call, src = own[0]
        head = _producers(prepared, [src], scope, fx_index, calls, module_calls)[0][-1]  # the first own op's last
        base = head.target if head.op == "call_module" else ".".join(p for p in (head.scope, head.target) if p)
        if head.op == "call_function" and head.fx_index:
            base += f"_{head.fx_index}"
        name, k = ACT_PREFIX + base, 2
        while name in names:
            name, k = f"{ACT_PREFIX}{base}#{k}", k + 1
        names.add(name)
        what = " + ".join(type(prepared.get_submodule(p.target)).__name__ if p.op == "call_module" else p.target
                          for p in producers)
        if shared_with:
            what += f", sharing {shared_with}'s range"
        out.append(ActQuantizer(name, what, tuple(producers), src.name, calls_of[call][1].target, calls_of[call][0],
                                problem, call))
    return sorted(out, key=lambda q: q.position)


def _producers(gm, sources, scope, fx_index, calls, module_calls) -> tuple[list[Producer], str | None]:
    """The ops from ``sources`` back to the previous quantizers (observers), inputs or layers, in graph order."""
    found, stack, problem = {}, list(sources), None
    while stack:
        n = stack.pop()
        if not isinstance(n, torch.fx.Node) or n.name in found or n.op in ("placeholder", "get_attr", "output"):
            continue
        if n.op == "call_module" and _is_observer(gm.get_submodule(n.target)):
            continue
        if _is_layer(gm, n):
            continue
        found[n.name] = n
        stack.extend(a for a in n.all_input_nodes)
    order = {n.name: i for i, n in enumerate(gm.graph.nodes)}
    out = []
    for n in sorted(found.values(), key=lambda n: order[n.name]):
        if n.op == "call_module":
            if module_calls.get(n.target, 0) > 1:
                problem = (f"module {n.target} is called {module_calls[n.target]} times and torch.ao's "
                           "QConfigMapping names modules, not calls: it cannot be kept in FP32 at one call only")
            out.append(Producer("call_module", n.target, n.name, call=calls.get(n.name, 0)))
        elif n.op == "call_function":
            s = scope.get(n.name, ("", None))[0]
            out.append(Producer("call_function", _fn_name(n.target), n.name, s, fx_index.get(n.name, 0),
                                calls.get(n.name, 0), n.target))
        else:  # call_method: FX gives a method call no qconfig of its own (only its module's)
            problem = (f"it is written by the method call {n.target!r}, which torch.ao FX configures only with its "
                       "whole module: it cannot be kept in FP32 alone")
            out.append(Producer("call_method", str(n.target), n.name, scope.get(n.name, ("", None))[0]))
    return out, problem


def check_act_names(keep: tuple[str, ...], found: list[ActQuantizer]) -> list[ActQuantizer]:
    """The quantizers of ``found`` that ``keep`` names (its ``act:`` names); raises SpecError naming an
    unknown one (with the model's nearest quantizer names) or one that cannot be kept (with why)."""
    from qcore.quant.spec import SpecError

    by_name = {q.name: q for q in found}
    out = []
    for name in (n for n in keep if is_act(n)):
        q = by_name.get(name)
        if q is None:
            known = list(by_name)
            near = difflib.get_close_matches(name, known, n=5, cutoff=0.5) or known[:5]
            raise SpecError(f"keep_float: the model has no activation quantizer {name!r}; near names: "
                            f"{', '.join(near) or 'none'} ({len(known)} activation quantizers in all)")
        if q.problem:
            raise SpecError(f"keep_float: {name} ({q.op}) cannot be kept in FP32: {q.problem}")
        out.append(q)
    return out


def keep_in_mapping(mapping, kept: list[ActQuantizer]) -> None:
    """Give the producers of each kept quantizer no qconfig in the FX ``mapping`` (see the module)."""
    for q in kept:
        for p in q.producers:
            if p.op == "call_module":
                mapping.set_module_name(p.target, None)
            else:
                mapping.set_module_name_object_type_order(p.scope, p.fn, p.fx_index, None)


def still_quantized(prepared: torch.fx.GraphModule, kept: list[ActQuantizer]) -> list[str]:
    """The kept quantizers one of whose producers still has a qconfig in ``prepared`` (the mapping did not take):
    the fx backend refuses rather than quantize quietly. (An observer may still follow the last producer: the
    input observer of an int8 op that reads the tensor.)"""
    qconfigs = prepared.meta["_observed_graph_module_attrs"].node_name_to_qconfig
    return [q.name for q in kept if any(qconfigs.get(p.node) is not None for p in q.producers)]


NOT_KEPT = "not kept in FP32: "  # how a build's note names a kept quantizer that ran on int8 anyway


def not_kept_note(name: str) -> str:
    """The note of a build in which ``name`` was asked to be kept in FP32 but ran on int8 (:func:`fed_int8`)."""
    return (f"{NOT_KEPT}{name}: torch.ao FX runs it on int8 anyway (it reads a quantized layer's output and has an "
            "int8 kernel of its own, such as a hardsigmoid's fixed-scale one)")


def fed_int8(converted: torch.nn.Module, kept: list[ActQuantizer], example: torch.Tensor) -> list[str]:
    """The kept quantizers a module producer of which still reads an int8 tensor in the ``converted`` model (one
    forward of ``example``, watched by hooks): torch.ao FX inserts no dequantize before an op it can run on int8
    itself, such as a hardsigmoid after a quantized layer (a fixed-scale op), so the keep did not take there."""
    seen: set[str] = set()
    hooks = []
    for q in kept:
        for p in q.producers:
            if p.op != "call_module":
                continue
            try:
                module = converted.get_submodule(p.target)
            except AttributeError:  # fused into another module: that one's qconfig decides
                continue
            hooks.append(module.register_forward_pre_hook(
                lambda mod, args, name=q.name: seen.update([name] if any(
                    isinstance(a, torch.Tensor) and a.is_quantized for a in args) else [])))
    try:
        with torch.inference_mode():
            converted(example)
    finally:
        for h in hooks:
            h.remove()
    return [q.name for q in kept if q.name in seen]


# -- pt2e ---------------------------------------------------------------------------------------------------------


def _inner_module(node) -> str | None:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    return list(stack.values())[-1][0]


def _source(node) -> tuple[str, object] | None:
    stack = node.meta.get("source_fn_stack")
    return stack[-1] if stack else None


def pt2e_nodes(graph: torch.fx.Graph, kept: list[ActQuantizer]) -> tuple[list, list[str]]:
    """``(nodes, missing)``: the exported graph's nodes of each kept quantizer's producers (module calls by the
    module's path and call order, function calls by scope, operation and call order), and the names of the
    quantizers one of whose producers matched no node."""
    groups: dict[tuple, list[list]] = {}
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        src = _source(node)
        if src is None:
            continue
        where = _inner_module(node)
        fn = src[1]
        if isinstance(fn, type):  # a module call: its module's path
            key = ("call_module", where)
        else:
            name = _fn_name(fn)
            key = ("call_function", where, _FAMILY.get(name, name))  # the module whose forward called it
        calls = groups.setdefault(key, [])
        if not calls or calls[-1][0] != src[0]:
            calls.append([src[0]])
        calls[-1].append(node)
    nodes, missing = [], []
    for q in kept:
        found = []
        for p in q.producers:
            key = ("call_module", p.target) if p.op == "call_module" else ("call_function", p.scope, p.family)
            calls = groups.get(key, [])
            if p.call >= len(calls):
                missing.append(q.name)
                break
            found += calls[p.call][1:]
        else:
            nodes += found
    return nodes, missing


class KeepNodesFloat:
    """A PT2E quantizer that marks ``nodes`` (by name, matched in the graph it annotates) "not quantized" and
    then lets ``inner`` annotate the rest: the patterns that contain them are not formed (see the module).
    ``kept`` are the quantizers; a producer the exported graph lacks raises SpecError."""

    def __new__(cls, inner, kept: list[ActQuantizer]):
        from torchao.quantization.pt2e.quantizer import Quantizer

        class _Keep(Quantizer):
            def transform_for_annotation(self, model):
                return inner.transform_for_annotation(model)

            def annotate(self, model):
                from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import _annotate_nodes_not_quantize

                from qcore.quant.spec import SpecError

                nodes, missing = pt2e_nodes(model.graph, kept)
                if missing:
                    raise SpecError(f"keep_float: no node of the pt2e graph is the producer of {missing[0]}, so it "
                                    "cannot be left in FP32 there; allowed: the fx backend")
                for n in nodes:
                    _annotate_nodes_not_quantize(n)
                return inner.annotate(model)

            def validate(self, model):
                return inner.validate(model)

        return _Keep()


