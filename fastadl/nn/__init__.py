"""Modules: the drop-in MixedOp, the search cell, the trellis SuperNet and its heads."""

from fastadl.nn.autodeeplab import AutoDeepLab
from fastadl.nn.cell import SearchCell
from fastadl.nn.convert import convert_mixed_ops
from fastadl.nn.mixed_op import MixedOp
from fastadl.nn.supernet import SuperNet

__all__ = ["AutoDeepLab", "MixedOp", "SearchCell", "SuperNet", "convert_mixed_ops"]
