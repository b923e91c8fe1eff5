"""What a budget is for, in the search's flags' terms (no torch: the CLI's --help imports it)."""

from __future__ import annotations

# The target flags' units, and the units a budgeted search's genotype.json reports.
TARGET_UNITS = {"latency_target": "ms", "flops_target": "GMACs"}
REPORTED_UNITS = ("ms", "GMACs", "Mparams")


def parse_size(text: str, flag: str = "--deploy-size") -> tuple[int, int]:
    """ "HxW" (e.g. 512x1024) → (H, W); ValueError naming ``flag`` otherwise."""
    parts = text.lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{flag} must be HxW, e.g. 512x1024, got {text!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{flag} must be HxW with H, W >= 1, got {text!r}")
    return h, w
