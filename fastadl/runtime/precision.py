"""Mixed precision: autocast context and gradient scaler for ``--amp off|bf16|fp16``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    mode: str  # off | bf16 | fp16
    device_type: str  # cpu | cuda

    def autocast(self):
        """Autocast for the forward; α/β and their softmax stay float32 inside the SuperNet."""
        if self.mode == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mode == "bf16" else torch.float16
        return torch.autocast(self.device_type, dtype=dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16 (bf16 has float32's range and needs none).

        Each optimizer gets its own scaler: the weight and architecture steps run separate
        backward passes, so each scale/step/update cycle stays self-contained.
        """
        return torch.amp.GradScaler(self.device_type, enabled=self.mode == "fp16")
