"""What a search does besides its pieces' forwards and backwards (fastadl/diagnostics/pieces.py):
the optimizer steps and the per-epoch validation, both counted, and data loading, estimated.

- optimizer steps: the weight step's gradient norm, clipping and FlatSGD step over every
  weight (its one flat parameter: fastadl/search/flat_sgd.py) and the α/β step's Adam, run on
  meta tensors under the same counter as the pieces. On CUDA the flat SGD step is one fused
  kernel and Adam runs foreach kernels (counted so on the ``cuda`` route); the meta device has
  no fused SGD, so its step counts as the few unfused operators.
- validation: after every epoch, the supernet's forward (no gradients) over the validation
  images at their validation size, ``val_batch_size`` (or ``batch_size``) per forward
  (fastadl/runtime/validation.py); counted as the pieces' forwards at that size.
- data loading: an estimate, per image decoded, resized and cropped by one loader worker
  (LOAD_MS_PER_IMAGE, a stated figure, ``--load-ms``), divided between the workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastadl.diagnostics.counting import Counts, count
from fastadl.diagnostics.measure import ROUTES
from fastadl.diagnostics.workloads import NetSpec

# Validation images and full-resolution (H, W) of the datasets (official val splits).
VAL_IMAGES = {"cityscapes": 500, "voc": 1449, "ade20k": 2000}
FULL_SIZE = {"cityscapes": (1024, 2048)}


@dataclass(frozen=True)
class Overheads:
    weight_optimizer: Counts  # per weight step
    arch_optimizer: Counts  # per α/β step
    validation: Counts  # per validation forward
    val_spec: NetSpec
    val_forwards: int  # per epoch


def optimizer_counts(s: NetSpec, cfg, route: str) -> tuple[Counts, Counts]:
    """(weight step's, α/β step's) optimizer counts for the SuperNet ``s`` and config ``cfg``."""
    from fastadl.runtime.steps import stepped_parameters
    from fastadl.search.flat_sgd import search_weight_optimizer

    with torch.device("meta"):
        net = s.build(ROUTES[route])
        w_opt = search_weight_optimizer(
            net, False, lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay
        )
        for group in w_opt.param_groups:  # the meta device has no fused SGD kernel,
            group["fused"] = False  # and the unfused step reads a tensor rate on the host
            group["lr"] = cfg.w_lr
        arch = net.arch_parameters()
        for p in arch:
            p.grad = torch.empty_like(p)
    # outside the meta device: Adam keeps its step counts on the host, as on CUDA
    a_opt = torch.optim.Adam(
        arch,
        lr=cfg.arch_lr,
        betas=(cfg.arch_beta1, cfg.arch_beta2),
        weight_decay=cfg.arch_weight_decay,
        foreach=route == "cuda",
    )
    flat = stepped_parameters(w_opt)

    def weight() -> None:  # fastadl/runtime/steps.py weight_step's part after the backward;
        # foreach=False: the meta device has no foreach kernels (over one flat tensor the
        # foreach calls are as many operators)
        w_opt.zero_grad()
        norm = torch.nn.utils.get_total_norm([p.grad for p in flat], foreach=False)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(flat, cfg.grad_clip, norm, foreach=False)
        w_opt.step()

    w_opt.step(), a_opt.step()  # first steps create the momentum and moment buffers
    return count(weight), count(a_opt.step)


def dataset_val_size(cfg, crop: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a validation image as the config loads it: the dataset's full size (synthetic:
    ``image_size``) resized as ``val_resize`` says (``image_height``/``image_width``, one alone
    keeping the aspect, or ``resize_factor``); ``crop`` where the dataset's size is unknown."""
    full = FULL_SIZE.get(cfg.data)
    if cfg.data == "synthetic" and cfg.image_size:
        full = (cfg.image_size, cfg.image_size)
    if full is None:
        return crop
    if not cfg.val_resize:
        return full
    h, w = cfg.image_height, cfg.image_width
    if h or w:
        return (h or round(full[0] * w / full[1]), w or round(full[1] * h / full[0]))
    return (round(full[0] * cfg.resize_factor), round(full[1] * cfg.resize_factor))


def validation_spec(s: NetSpec, cfg, val_size: tuple[int, int] | None) -> NetSpec:
    """The SuperNet and batch of one validation forward: ``val_size`` (H, W), or
    dataset_val_size."""
    if val_size is None:
        val_size = dataset_val_size(cfg, (s.height, s.width))
    batch = cfg.val_batch_size or cfg.batch_size
    return NetSpec(s.layers, s.filter_multiplier, s.block_multiplier, s.classes, batch, *val_size)


def validation_forwards(cfg, val_images: int) -> int:
    """Forwards of one validation (``val_images`` capped by the config's ``val_images``)."""
    images = min(val_images, cfg.val_images) if cfg.val_images else val_images
    return math.ceil(images / (cfg.val_batch_size or cfg.batch_size))


def loading_seconds(images: int, ms_per_image: float, workers: int) -> float:
    """Seconds to load ``images`` images with ``workers`` loader processes (0 = in-process)."""
    return images * ms_per_image * 1e-3 / max(workers, 1)
