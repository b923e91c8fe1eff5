"""Modules: the drop-in MixedOp, the search cell, the trellis SuperNet and its heads."""

from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.nn.search.cell import SearchCell
from fastadl.nn.search.convert import convert_mixed_ops
from fastadl.nn.search.mixed_op import MixedOp
from fastadl.nn.search.supernet import SuperNet

__all__ = ["AutoDeepLab", "MixedOp", "SearchCell", "SuperNet", "convert_mixed_ops"]
