"""Cell-level indexing shared by the search cell, α and decoding (docs/METHOD.md §1).

Block i (0-based) has 2 + i candidate inputs: 0 = H^{l-2}, 1 = H^{l-1}, 2 + j = block j's output.
α's rows are the edges in DARTS order: block 0's inputs 0, 1; block 1's inputs 0, 1, 2; ...
"""

from __future__ import annotations


def num_edges(blocks: int) -> int:
    """Edges of a cell with ``blocks`` blocks: 2 + 3 + ... + (blocks + 1) (20 for B = 5)."""
    return sum(2 + i for i in range(blocks))


def edge_offset(block: int) -> int:
    """Row of α holding block ``block``'s input 0."""
    return sum(2 + i for i in range(block))


def edge_index(block: int, source: int) -> int:
    """Row of α for the edge source → block (source < 2 + block)."""
    if not 0 <= source < 2 + block:
        raise ValueError(f"block {block} has inputs 0..{block + 1}, got {source}")
    return edge_offset(block) + source
