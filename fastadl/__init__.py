"""fastadl: a fast, faithful Auto-DeepLab (``from fastadl import MixedOp, SuperNet, PRIMITIVES``)."""

from fastadl.nn import (
    AutoDeepLab,
    MixedOp,
    SearchCell,
    SuperNet,
    autodeeplab_backbone,
    convert_mixed_ops,
)
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype
from fastadl.space.primitives import PRIMITIVES

__version__ = "0.1.0"
__all__ = [
    "AutoDeepLab",
    "PAPER_GENOTYPE",
    "PRIMITIVES",
    "Genotype",
    "MixedOp",
    "SearchCell",
    "SuperNet",
    "autodeeplab_backbone",
    "convert_mixed_ops",
]
