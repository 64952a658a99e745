"""Normalisation layers by name, so configs can say ``norm: rmsnorm``."""
from __future__ import annotations

from torch import nn

NORMS = ("layernorm", "rmsnorm")


def make_norm(name: str, dim: int, affine: bool = False, eps: float = 1e-6) -> nn.Module:
    """LayerNorm or RMSNorm (Zhang & Sennrich 2019) over the last axis.

    adaLN blocks use ``affine=False``: the scale and shift come from the conditioning.
    """
    if name == "layernorm":
        return nn.LayerNorm(dim, elementwise_affine=affine, eps=eps)
    if name == "rmsnorm":
        return nn.RMSNorm(dim, elementwise_affine=affine, eps=eps)
    raise ValueError(f"unknown norm {name!r}; choose one of {NORMS}")
