"""Switch the backend of every MixedOp in a model, in place (parameters are untouched)."""

from __future__ import annotations

from torch import nn

from fastadl.nn.search.mixed_op import MixedOp
from fastadl.ops.dispatch import check_backend


def convert_mixed_ops(
    model: nn.Module, backend: str = "auto", recompute: bool | None = None
) -> nn.Module:
    """Set ``backend`` (and ``recompute`` unless None) on every MixedOp in ``model`` (itself
    included); returns ``model``. The state_dict is the same before and after.

        net = convert_mixed_ops(SuperNet(num_classes=19), "fused", recompute=True)
    """
    check_backend(backend)
    for m in model.modules():
        if isinstance(m, MixedOp):
            m.backend = backend
            if recompute is not None:
                m.recompute = recompute
    return model
