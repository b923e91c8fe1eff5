"""The torch-facing op layer: primitives, reference op modules and the mixed op."""

from fastadl.ops.reference import OPS
from fastadl.space.primitives import DERIVED_PRIMITIVES, PRIMITIVES

__all__ = ["DERIVED_PRIMITIVES", "OPS", "PRIMITIVES"]
