"""The simplified ASPP head that sits on each level of the supernet's last layer (§2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(C_in: int, C_out: int, k: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(C_in, C_out, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(C_out),
        nn.ReLU(inplace=False),
    )


class SearchASPP(nn.Module):
    """Branches 1×1, 3×3 dilated, image pooling (C channels each) → concat → 1×1-BN-ReLU → classes.

    x: (N, C_in, h, w) → (N, num_classes, h, w). The image-pooling branch has no BN
    (**decision**: BN over N·1·1 values is degenerate at the search's batch of 2 and fails at 1).
    """

    def __init__(self, C_in: int, C: int, dilation: int, num_classes: int):
        super().__init__()
        self.conv1x1 = _conv_bn_relu(C_in, C, 1)
        self.atrous = _conv_bn_relu(C_in, C, 3, dilation)
        self.pool_conv = nn.Conv2d(C_in, C, 1)
        self.project = _conv_bn_relu(3 * C, C, 1)
        self.classifier = nn.Conv2d(C, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.relu(self.pool_conv(F.adaptive_avg_pool2d(x, 1)))
        pooled = pooled.expand(-1, -1, x.shape[2], x.shape[3])
        y = torch.cat([self.conv1x1(x), self.atrous(x), pooled], dim=1)
        return self.classifier(self.project(y))
