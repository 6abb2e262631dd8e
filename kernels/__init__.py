"""Triton kernels (installed as mathlm.kernels)."""
