"""The ordered candidate-op names. Their order fixes the columns of α (docs/METHOD.md §1)."""

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# Ops a decoded genotype may use: everything but `none` (docs/METHOD.md §4).
DERIVED_PRIMITIVES: tuple[str, ...] = tuple(p for p in PRIMITIVES if p != "none")
