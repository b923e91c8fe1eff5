"""Export a retrained network for deployment: torch.export → AOTInductor model package (.pt2),
or ONNX through torch.onnx's dynamo exporter.

The exported program is the network in eval mode with BatchNorm folded into its convs
(fastadl/nn/derived/fold_batchnorm.py) at one fixed input size: x (1, 3, H, W) float32, normalised
with the package's mean/std, **contiguous** (a compiled package assumes the strides it was
compiled for and does not check them: an HWC-strided view gives wrong logits, silently) →
logits (1, K, H, W) float32 (bf16 packages cast inside). The
package's metadata (``fastadl.*`` keys, all strings) holds everything a runner needs besides
the model: input size, class names, palette, mean/std, the resize rule (fixed_size.py) and
the overlay weight; native/model_package.cpp reads the same keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fastadl.data.transforms import MEAN, STD
from fastadl.deploy.fixed_size import RESIZE_RULE
from fastadl.deploy.inference import LoadedModel, model_from_checkpoint
from fastadl.deploy.predictor import OVERLAY_ALPHA, palette_for
from fastadl.nn.derived.fold_batchnorm import count_batchnorms, fold_batchnorm

FORMAT_VERSION = "1"  # bump with native/model_package.cpp's kFormat when the keys change
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SUFFIXES = {"aoti": ".pt2", "onnx": ".onnx"}


class ExportError(ValueError):
    """A user-facing export failure: the message names the flag or file at fault."""


class CastingNetwork(nn.Module):
    """Runs ``model`` in ``dtype``: x (N, 3, H, W) float32 → logits (N, K, H, W) float32.

    The cast sits inside the exported program so a runner always feeds float32 and reads
    float32, whatever precision the package computes in.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def min_side(loaded: LoadedModel) -> int:
    """The smallest input side the export accepts: the path's deepest downsample rate.

    (**decision**) Any positive size runs, but below this the coarsest level of the path is
    made of padding only (every 3×3 conv there sees zeros around one pixel): such a size is a
    mistake, not a deployment.
    """
    return 4 * 2 ** max(loaded.genotype.path)


def check_size(loaded: LoadedModel, size: tuple[int, int]) -> None:
    need = min_side(loaded)
    if min(size) < need:
        raise ExportError(
            f"--size {size[0]}x{size[1]}: this network's path goes down to 1/{need} of the input, "
            f"so each side must be at least {need} pixels"
        )


def check_compiler() -> str:
    """The C++ compiler AOTInductor will use, or an ExportError saying how to get one."""
    from torch._inductor import cpp_builder, exc

    try:
        return cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        raise ExportError(
            "AOTInductor needs a C++ compiler and none was found: install g++ (Debian: apt-get "
            "install g++) or point the CXX environment variable at one"
        ) from None


def resolve_export_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise ExportError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ExportError("--device cuda: no CUDA device is visible on this machine")
    return torch.device(name)


def package_metadata(loaded: LoadedModel, size: tuple[int, int], dtype: str) -> dict[str, str]:
    """The ``fastadl.*`` metadata of a package (all values strings; see the module docstring)."""
    names = list(loaded.class_names)
    if not 1 <= len(names) <= 256:  # class ids go into an 8-bit palette PNG
        raise ExportError(f"a package holds 1..256 classes; this network has {len(names)}")
    if any("\n" in n for n in names):
        raise ExportError("class names must not contain line breaks (the metadata is one per line)")
    return {
        "fastadl.format": FORMAT_VERSION,
        "fastadl.input_size": f"{size[0]}x{size[1]}",
        "fastadl.class_names": "\n".join(names),
        "fastadl.palette": ";".join(",".join(str(int(v)) for v in c) for c in palette_for(loaded)),
        "fastadl.mean": ",".join(repr(float(v)) for v in MEAN),
        "fastadl.std": ",".join(repr(float(v)) for v in STD),
        "fastadl.resize": RESIZE_RULE,
        "fastadl.overlay_alpha": repr(float(OVERLAY_ALPHA)),
        "fastadl.dtype": dtype,
        "fastadl.model": loaded.config.model,
        "fastadl.space.genotype": json.dumps(loaded.genotype.to_dict(), separators=(",", ":")),
        "fastadl.step": str(loaded.step),
    }


def exportable_network(loaded: LoadedModel, dtype: str) -> nn.Module:
    """The loaded network, eval mode, BN folded, cast to ``dtype`` (changes loaded.model)."""
    model = loaded.model.eval()
    fold_batchnorm(model)
    left = count_batchnorms(model)
    if left:  # every BN of AutoDeepLab follows a conv: one left means the network changed
        logging.getLogger(__name__).warning("%d BatchNorm layer(s) could not be folded", left)
    return CastingNetwork(model, DTYPES[dtype]).eval()


@contextlib.contextmanager
def _quiet():
    """torch.export / inductor / onnx print deprecation and registry chatter: not the user's."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            onnx_log.setLevel(level)


def _write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` next to ``out`` then rename: a failed export leaves no half file."""
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_aoti(net: nn.Module, x: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
    program = torch.export.export(net, (x,))
    configs = {"aot_inductor.metadata": metadata}
    _write_atomically(
        out,
        lambda tmp: torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp), inductor_configs=configs
        ),
    )


def write_onnx(net: nn.Module, x: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
    import onnx  # the [onnx] extra; checked by run_export before any slow step

    program = torch.onnx.export(
        net, (x,), dynamo=True, input_names=["image"], output_names=["logits"], verbose=False
    )

    def write(tmp: Path) -> None:
        program.save(str(tmp))
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(tmp))

    _write_atomically(out, write)


@dataclass
class ExportResult:
    out: Path
    format: str
    device: str
    dtype: str
    size: tuple[int, int]
    class_names: list[str]
    batchnorms_folded: int


def run_export(
    checkpoint: str | os.PathLike,
    size: tuple[int, int],
    out: str | os.PathLike,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    fmt: str = "aoti",
    step: Callable[[str], None] = lambda name: None,
) -> ExportResult:
    """Export the retrained network of ``checkpoint`` (run dir or file) at ``size`` = (H, W).

    step: called with a short name before each stage (a progress bar's hook). Raises
    ExportError (and the checkpoint loader's errors) with one-line messages.
    """
    out = Path(out)
    if fmt not in SUFFIXES:
        raise ExportError(f"--format must be one of {', '.join(SUFFIXES)}, got {fmt!r}")
    if out.suffix != SUFFIXES[fmt]:
        raise ExportError(f"--out {out}: a {fmt} export is written to a {SUFFIXES[fmt]} file")
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: the folder {out.parent} does not exist")
    if dtype not in DTYPES:
        raise ExportError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if fmt == "onnx" and dtype != "fp32":
        # **decision**: onnxruntime's CPU kernels have no bf16 convolutions; keep ONNX fp32.
        raise ExportError("--format onnx exports fp32 only (onnxruntime has no bf16 CPU convs)")
    dev = resolve_export_device(device)
    # Fail in a second, before the network is loaded or traced, when a tool is missing.
    if fmt == "aoti":
        check_compiler()
    else:
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise ExportError(
                f"--format onnx needs the onnx and onnxscript packages ({e.name} is missing): "
                "pip install 'fastadl[onnx]'"
            ) from None

    step("load")
    loaded = model_from_checkpoint(checkpoint, dev)
    check_size(loaded, size)
    metadata = package_metadata(loaded, size, dtype)
    folded = count_batchnorms(loaded.model)
    net = exportable_network(loaded, dtype)
    folded -= count_batchnorms(net)
    x = torch.zeros(1, 3, *size, device=dev)
    step("export + compile" if fmt == "aoti" else "export")
    with _quiet(), torch.no_grad():
        (write_aoti if fmt == "aoti" else write_onnx)(net, x, out, metadata)
    return ExportResult(out, fmt, dev.type, dtype, size, list(loaded.class_names), folded)
