"""The torch-facing op layer: primitives, reference op modules and the mixed op."""

from fastadl.ops.primitives import DERIVED_PRIMITIVES, PRIMITIVES
from fastadl.ops.reference import OPS

__all__ = ["DERIVED_PRIMITIVES", "OPS", "PRIMITIVES"]
