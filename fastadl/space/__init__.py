"""The search space as indices and tensors, no modules: the cell topology (α's rows), the trellis
(levels, moves, β normalisation), genotypes (decoding, the paper's) and random genotypes."""
