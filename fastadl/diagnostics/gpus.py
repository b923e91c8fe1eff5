"""Named GPUs for the cost model's projections: vendor peak rates (datasheets; float32 on the
CUDA cores: the search's depthwise convolutions cannot use tensor cores) and the projection
rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    name: str
    fp32_tflops: float  # peak float32 (non-tensor-core) TFLOP/s
    bandwidth_gbs: float  # peak DRAM bandwidth, GB/s


GPUS = {
    "P100": GPU("Tesla P100 PCIe 16 GB", 9.3, 732),  # the paper's GPU
    "V100": GPU("Tesla V100 SXM2", 15.7, 900),
    "A100": GPU("A100 SXM4 40 GB", 19.5, 1555),
    "H100": GPU("H100 SXM5", 67.0, 3350),
}

# Cost of one kernel launch in an eager PyTorch step: the CPU-side dispatch and launch of an
# operator (~5 µs for ATen ops on a fast host; the GPU itself needs ~2-3 µs per tiny kernel).
# **decision**: 5 µs by default, a flag of ``python -m fastadl.cost``; CUDA-graph replay of a
# captured step (issue 9) removes the CPU part, so its rows use GRAPH_LAUNCH_US.
LAUNCH_US = 5.0
# **decision**: a stated figure, not measured here: decoding a 2048×1024 Cityscapes PNG and
# its label map, resizing and cropping them takes ~30-50 ms on one core of a current server
# (fastadl/diagnostics/overheads.py adds it per worker; here because --help must not import
# torch's counting machinery, which imports Triton).
LOAD_MS_PER_IMAGE = 40.0
GRAPH_LAUNCH_US = 1.0


def step_seconds(flops: float, nbytes: float, launches: float, gpu: GPU, launch_us: float) -> float:
    """A lower bound for one step: the slower of compute and memory at peak (roofline), plus
    the launches' fixed cost, which peak rates cannot hide when kernels are this small."""
    roofline = max(flops / (gpu.fp32_tflops * 1e12), nbytes / (gpu.bandwidth_gbs * 1e9))
    return roofline + launches * launch_us * 1e-6
