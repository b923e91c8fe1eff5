"""The per-edge `fused` backend: one mixed-op edge in few, large PyTorch ops, with a
hand-written backward (fused.py is the entry)."""
