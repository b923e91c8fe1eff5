"""The torch-facing op layer: the reference op modules (OPS), the backend dispatch, one
sub-package per implementation (edge/, cell/, triton/); the op names come from fastadl/space."""

from fastadl.ops.reference import OPS
from fastadl.space.primitives import DERIVED_PRIMITIVES, PRIMITIVES

__all__ = ["DERIVED_PRIMITIVES", "OPS", "PRIMITIVES"]
