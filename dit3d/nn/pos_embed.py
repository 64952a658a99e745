r"""Fixed sine-cosine positional embeddings for 1-D, 2-D and 3-D token grids.

For an ``n``-D grid the width ``D`` is split into ``n`` equal parts, one per axis, each
holding ``[sin(p\,\omega_i), cos(p\,\omega_i)]`` with ``\omega_i = 10000^{-2i/(D/n)}``.
So ``D`` must be divisible by ``2n`` (by 6 for 3-D grids). Tokens are ordered row-major
over the grid axes as given (``torch.meshgrid(..., indexing="ij")``), the same order
:func:`dit3d.nn.window.window_partition` assumes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def sincos_1d(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sin-cos features of scalar positions.

    Shapes:
        positions: ``(T,)`` -> ``(T, dim)``
    """
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even width, got {dim}")
    omega = 1.0 / max_period ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    args = positions.double()[:, None] * omega[None]  # (T, dim/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1).float()  # (T, dim)


def sincos_grid(grid_size: Sequence[int], dim: int) -> Tensor:
    """Fixed positional embedding of an ``n``-D grid, flattened row-major.

    Args:
        grid_size: tokens per axis, e.g. ``(8, 8, 8)``.
        dim: embedding width; must be divisible by ``2 * len(grid_size)``.

    Shapes:
        -> ``(prod(grid_size), dim)``

    Example:
        >>> sincos_grid((8, 8, 8), 384).shape
        torch.Size([512, 384])
    """
    n = len(grid_size)
    if n == 0 or any(g < 1 for g in grid_size):
        raise ValueError(f"grid_size must be a non-empty tuple of positive ints, got {tuple(grid_size)}")
    if dim % (2 * n):
        raise ValueError(
            f"a {n}-D sin-cos embedding needs a width divisible by {2 * n}, got {dim}; "
            f"pick a hidden size that is a multiple of {2 * n} (e.g. 1152 instead of 1024 for 3-D)"
        )
    axes = torch.meshgrid(*[torch.arange(g) for g in grid_size], indexing="ij")
    parts = [sincos_1d(a.reshape(-1), dim // n) for a in axes]  # n x (T, dim/n)
    return torch.cat(parts, dim=1)  # (T, dim)


def sincos_1d_table(length: int, dim: int) -> Tensor:
    """``(length, dim)`` table for a 1-D sequence of positions ``0..length-1``."""
    return sincos_grid((length,), dim)


def sincos_2d(grid_size: Sequence[int], dim: int) -> Tensor:
    """``(H*W, dim)`` table for a 2-D grid; ``dim`` divisible by 4."""
    if len(grid_size) != 2:
        raise ValueError(f"sincos_2d needs (H, W), got {tuple(grid_size)}")
    return sincos_grid(grid_size, dim)


def sincos_3d(grid_size: Sequence[int], dim: int) -> Tensor:
    """``(X*Y*Z, dim)`` table for a 3-D grid; ``dim`` divisible by 6."""
    if len(grid_size) != 3:
        raise ValueError(f"sincos_3d needs (X, Y, Z), got {tuple(grid_size)}")
    return sincos_grid(grid_size, dim)
