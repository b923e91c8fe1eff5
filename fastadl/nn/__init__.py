"""Modules: the drop-in MixedOp, the search cell, the trellis SuperNet and its heads."""

from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.nn.derived.backbone import AutoDeepLabFeatures, autodeeplab_backbone
from fastadl.nn.search.cell import SearchCell
from fastadl.nn.search.convert import convert_mixed_ops
from fastadl.nn.search.mixed_op import MixedOp
from fastadl.nn.search.supernet import SuperNet

__all__ = [
    "AutoDeepLab",
    "AutoDeepLabFeatures",
    "MixedOp",
    "SearchCell",
    "SuperNet",
    "autodeeplab_backbone",
    "convert_mixed_ops",
]
