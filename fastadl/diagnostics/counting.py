"""Count what a piece of the search iteration launches, moves and saves, by running it on fake
tensors (torch's FakeTensorMode: shapes and dtypes, no data, no compute).

- launches: dispatched ATen operators that run a kernel (views, aliases, allocations and
  metadata queries excluded); a ``fastadl::`` Triton op counts the kernels its launcher starts
  (LAUNCHES). On CUDA one operator is about one kernel launch (some cuDNN/BatchNorm calls
  launch 2–3, a foreach optimizer op a few): a lower bound in the same units per backend.
- bytes: per operator, the bytes of its tensor inputs plus its outputs: the traffic of kernels
  that each read their inputs and write their outputs once, with no reuse between kernels (a
  lower bound for the backend's structure; partial-sum buffers of the Triton reductions,
  < 10 % of their inputs, are not counted).
- saved: bytes autograd keeps for the backward (saved_tensors_hooks; parameters excluded, each
  storage once).
- flops: torch.utils.flop_counter's count of what actually runs (convolutions, matrix
  products), with two additions: a grouped convolution's weight gradient divided by its groups
  (flop_counter counts a depthwise weight gradient as dense, C× too many; pytorch/pytorch#183405
  proposes the same fix) and formulas for the fastadl:: depthwise ops. It differs from the
  analytical count (fastadl/diagnostics/pieces.py) where a backend computes gradients nobody
  asked for: an autograd.Function's backward sees which inputs require grad, not which
  gradients the caller wants, so in the α/β step it still computes weight gradients.

Fake tensors are CPU tensors: the backends run the same operators on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch._prims_common import suggest_memory_format
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import conv_backward_flop, flop_registry, shape_wrapper

# Kernels each fastadl:: Triton op launches (kernels/*.py launchers; a weight gradient or BN
# sum adds reduce.sum_rows). tests/diagnostics/test_cost.py checks this table against real launches.
LAUNCHES = {
    "weighted_sum": 1,
    "weighted_sum_backward": 2,
    "dwconv": 1,
    "dwconv_backward_input": 1,
    "dwconv_backward_weight": 2,
    "edge_dwconv_multi": 1,
    "edge_dwconv_multi_backward": 3,
    "pool3x3": 2,
    "pool3x3_backward": 1,
}

_NO_KERNEL = {
    "detach",
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",
    "lift_fresh",
    "set_",
    "resize_",
    "alias",
    "_local_scalar_dense",
    "is_same_size",
    "sym_size",
    "sym_stride",
    "sym_numel",
    "sym_storage_offset",
}


def _grouped_conv_backward(grad_out, x, w, bias, stride, padding, dilation, transposed,
                           output_padding, groups, output_mask, out_shape, **kwargs) -> int:  # fmt: skip
    args = (grad_out, x, w, bias, stride, padding, dilation, transposed, output_padding, groups)
    formula = conv_backward_flop.__wrapped__  # the shape-level formula
    grad_input = formula(*args, [output_mask[0], False, False], out_shape=out_shape)
    grad_weight = formula(*args, [False, output_mask[1], False], out_shape=out_shape)
    return grad_input + grad_weight // groups


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _dwconv_flop(x, w, *args, out_shape=None, **kwargs) -> int:  # x (N,H,W,C), w (C,1,k,k)
    return 2 * _prod(x) * w[-1] * w[-2]


def _dwconv_backward_flop(dout, x, w, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(x) * w[-1] * w[-2]


def _edge_flop(x, w_s3, *args, out_shape=None, **kwargs) -> int:  # 68 taps per set
    return 2 * _prod(x) * w_s3[0] * 68


def _edge_backward_flop(dy, x, w_s3, *args, out_shape=None, **kwargs) -> int:  # dx and dw
    return 4 * _prod(x) * w_s3[0] * 68


def flop_formulas() -> dict:
    """Formulas on shapes, as FlopCounterMode's custom_mapping takes them (module docstring)."""
    formulas = {torch.ops.aten.convolution_backward: _grouped_conv_backward}
    if hasattr(torch.ops.fastadl, "dwconv"):  # registered once fastadl.ops.triton.functions loads
        ops = torch.ops.fastadl
        formulas.update({
            ops.dwconv: _dwconv_flop,
            ops.dwconv_backward_input: _dwconv_backward_flop,
            ops.dwconv_backward_weight: _dwconv_backward_flop,
            ops.edge_dwconv_multi: _edge_flop,
            ops.edge_dwconv_multi_backward: _edge_backward_flop,
        })  # fmt: skip
    return formulas


def _nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, list | tuple):
        for t in tree:
            yield from _tensors(t)
    elif isinstance(tree, dict):
        for t in tree.values():
            yield from _tensors(t)


def _eager_layout(out: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A meta convolution's output in the layout eager picks: torch's meta convolution always
    answers a contiguous tensor (it has no device to pick a backend by), where oneDNN on a CPU
    and cuDNN on CUDA return channels-last for a channels-last input or weight (as the meta
    convolution_backward already does); without this, every later reshape of a cell-path
    conv's output would count a copy that no device makes."""
    cl = torch.channels_last
    if out.dim() == 4 and cl in (suggest_memory_format(x), suggest_memory_format(w)):
        return torch.empty_like(out, memory_format=cl)
    return out


@dataclass
class Counts:
    launches: int = 0
    bytes: int = 0
    saved: int = 0
    flops: int = 0

    def _fields(self) -> tuple[int, int, int, int]:
        return self.launches, self.bytes, self.saved, self.flops

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self._fields(), other._fields(), strict=True)))

    def __mul__(self, k: int) -> Counts:
        return Counts(*(a * k for a in self._fields()))


class _Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = Counts()
        # flop_counter's formulas, applied per operator here (FlopCounterMode itself tracks
        # modules with hooks that autograd.grad of a leaf input does not support)
        self.flop_table = {
            **flop_registry,
            **{k: shape_wrapper(v) for k, v in flop_formulas().items()},
        }

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.ops.aten.convolution.default and out.device.type == "meta":
            out = _eager_layout(out, args[0], args[1])
        formula = self.flop_table.get(func.overloadpacket)
        if formula is not None:
            self.counts.flops += formula(*args, **kwargs, out_val=out)
        namespace, name = func.namespace, func._schema.name.split("::")[-1]
        if namespace == "fastadl":
            self.counts.launches += LAUNCHES.get(name, 1)
        elif namespace != "aten" or func.is_view or name in _NO_KERNEL:
            return out
        else:
            self.counts.launches += 1
        moved = sum(_nbytes(t) for t in _tensors((args, kwargs)))
        self.counts.bytes += moved + sum(_nbytes(t) for t in _tensors(out))
        return out


def count(run: Callable[[], None], saved_from: Callable[[], object] | None = None) -> Counts:
    """Launches and bytes of ``run()`` (call it under FakeTensorMode); with ``saved_from``, the
    bytes autograd saves while it runs (``saved_from`` returns the parameters to exclude)."""
    params = {t.untyped_storage()._cdata for t in (saved_from() if saved_from else ())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in params:
            saved[storage._cdata] = storage.nbytes()
        return t

    counter = _Counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), counter:
        run()
    counter.counts.saved = sum(saved.values()) if saved_from else 0
    return counter.counts
