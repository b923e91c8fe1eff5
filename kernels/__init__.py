"""Triton kernels and their plain-Python launchers (imported as ``fastadl.kernels``).

Importing this package imports no Triton: each kernel module does, when it is imported.
"""
