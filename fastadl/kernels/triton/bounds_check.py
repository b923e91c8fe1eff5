"""Out-of-bounds detection for Triton kernels run by the interpreter (TRITON_INTERPRET=1).

Under the interpreter a load or store is a raw access to host memory: one outside its tensor
does not fault, it reads or overwrites whatever the heap holds there. A corrupted heap may abort
the process much later (glibc's "corrupted double-linked list"), or never, depending on the
allocator's layout on that machine; on a GPU the same store lands in another allocation or
faults. So a passing interpreted test proves nothing about bounds unless accesses are checked.

``install()`` patches the interpreter so that every active lane of
every load, store and atomic must lie wholly inside the memory span of one tensor argument of
the running launch. An access that does not raises OutOfBoundsError *before* it happens, naming
the kernel, the access, its element offsets and the nearest tensor argument, so the heap is
never touched. Masked-off lanes are not accesses (the interpreter skips them), so they are not
checked either.

The span of a tensor argument is [lowest, highest] element it can address through its sizes
and strides: a kernel may read anything its view covers, nothing else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from triton.runtime import interpreter as interp


class OutOfBoundsError(RuntimeError):
    """A Triton kernel accessed memory outside every tensor argument of its launch."""


@dataclass(frozen=True)
class _Span:
    name: str
    lo: int  # first byte
    hi: int  # one past the last byte
    shape: tuple[int, ...]


_state = threading.local()


def tensor_span(t: torch.Tensor) -> tuple[int, int]:
    """[first byte, one past the last byte) that ``t``'s view can address (non-empty t)."""
    elem = t.element_size()  # torch strides are never negative: the view starts at data_ptr
    last = sum((s - 1) * st for s, st in zip(t.shape, t.stride(), strict=True))
    return t.data_ptr(), t.data_ptr() + (last + 1) * elem


def _spans(names, values) -> list[_Span]:
    out = []
    for name, v in zip(names, values, strict=False):
        items = v if isinstance(v, tuple) else (v,)
        for item in items:
            t = getattr(item, "base", item)  # triton's TensorWrapper keeps the tensor in .base
            if isinstance(t, torch.Tensor) and t.numel() > 0:
                lo, hi = tensor_span(t)
                out.append(_Span(name, lo, hi, tuple(t.shape)))
    return out


def _check(kind: str, ptrs, mask) -> None:
    launch = getattr(_state, "launch", None)
    if launch is None:
        return
    kernel, spans = launch
    addr = np.asarray(ptrs.data, dtype=np.uint64).reshape(-1)
    active = np.ones_like(addr, dtype=bool) if mask is None else np.asarray(mask.data, bool)
    addr = addr[np.broadcast_to(active, ptrs.data.shape).reshape(-1)]
    if addr.size == 0:
        return
    size = max(ptrs.get_element_ty().primitive_bitwidth // 8, 1)
    inside = np.zeros(addr.shape, dtype=bool)
    for s in spans:
        inside |= (addr >= s.lo) & (addr + size <= s.hi)
    if inside.all():
        return
    bad = addr[~inside].astype(np.int64)
    first = int(bad[0])

    def distance(s: _Span) -> int:
        return max(s.lo - first, first + size - s.hi, 0)

    where = "no tensor argument"
    if spans:
        near = min(spans, key=distance)
        off = (first - near.lo) // size
        where = (
            f"element offset {off} of '{near.name}' (shape {list(near.shape)}, "
            f"{(near.hi - near.lo) // size} elements addressable)"
        )
    raise OutOfBoundsError(
        f"{kernel}: {kind} of {bad.size} element(s) outside every tensor argument; the first at "
        f"{where}"
    )


def _patched():
    """(object, attribute, replacement) for every interpreter entry point that is patched."""
    b = interp.InterpreterBuilder
    orig_init = interp.GridExecutor._init_args_hst
    orig_load, orig_store = b.create_masked_load, b.create_masked_store
    orig_rmw, orig_cas = b.create_atomic_rmw, b.create_atomic_cas

    def init_args_hst(self, args_dev, kwargs):
        args_hst, kwargs_hst = orig_init(self, args_dev, kwargs)
        names = list(self.arg_names)
        spans = _spans(names, args_hst) + _spans(list(kwargs_hst), list(kwargs_hst.values()))
        _state.launch = (getattr(self.fn, "__name__", str(self.fn)), spans)
        return args_hst, kwargs_hst

    # The trailing arguments (cache and eviction policy, volatility, scope) differ between
    # Triton versions (3.6: cache_policy; 3.8: cache_modifier, eviction_policy): passed on as is.
    def load(self, ptrs, mask, *rest):
        _check("load", ptrs, mask)
        return orig_load(self, ptrs, mask, *rest)

    def store(self, ptrs, value, mask, *rest):
        _check("store", ptrs, mask)
        return orig_store(self, ptrs, value, mask, *rest)

    def rmw(self, rmw_op, ptr, val, mask, *rest):
        _check("atomic", ptr, mask)
        return orig_rmw(self, rmw_op, ptr, val, mask, *rest)

    def cas(self, ptr, *rest):
        _check("atomic", ptr, None)
        return orig_cas(self, ptr, *rest)

    return [
        (interp.GridExecutor, "_init_args_hst", init_args_hst),
        (b, "create_masked_load", load),
        (b, "create_masked_store", store),
        (b, "create_atomic_rmw", rmw),
        (b, "create_atomic_cas", cas),
    ]


def install() -> None:
    """Check every interpreted launch from now on (idempotent)."""
    if installed():
        return
    for obj, attr, fn in _patched():
        setattr(obj, attr, fn)


def installed() -> bool:
    """Whether interpreted launches are being checked now."""
    return getattr(interp.GridExecutor._init_args_hst, "__name__", "") == "init_args_hst"
