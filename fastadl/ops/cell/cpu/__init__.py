"""The CPU kernels (fastadl/kernels/cpu) as tensor functions for the cell path, each beside the
ATen twin that runs where the kernels are not built or do not apply."""
