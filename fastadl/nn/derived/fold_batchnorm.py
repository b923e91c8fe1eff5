"""Fold inference-mode BatchNorm into the convolution in front of it (for export).

In eval mode BN is the per-channel affine map y = γ·(x − μ)/√(σ² + ε) + β with fixed running
statistics, so ``BN(conv(x))`` is exactly one convolution with rescaled weights and a bias
(up to float rounding). That holds only where nothing sits between the two: a BN after a ReLU,
a pool or a sum is left alone. In AutoDeepLab every BN directly follows a conv (inside an
``nn.Sequential``, or ``ImagePooling``'s conv → BN), so the whole network folds.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fastadl.nn.derived.decoder import ImagePooling


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place.

    The model must be in eval mode (folding uses the running statistics, which training mode
    does not). Each folded BN is replaced by ``nn.Identity`` and its conv by the fused conv.
    Returns the number of BNs folded.
    """
    if any(m.training for m in model.modules()):
        raise ValueError("fold_batchnorm needs a model in eval mode (call model.eval() first)")
    folded = 0
    for module in list(model.modules()):  # a list: the loop replaces children
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:], strict=False):
                conv, bn = module._modules[first], module._modules[second]
                if _foldable(conv, bn):
                    module._modules[first] = fuse_conv_bn_eval(conv, bn)
                    module._modules[second] = nn.Identity()
                    folded += 1
        elif isinstance(module, ImagePooling) and _foldable(module.conv, module.bn):
            # eval-mode forward is bn(conv(pool(x))); its training-only branch needs the BN,
            # which is why fold_batchnorm insists on eval mode.
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
            folded += 1
    return folded


def count_batchnorms(model: nn.Module) -> int:
    """BatchNorm layers left in ``model`` (0 after folding an AutoDeepLab network)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
