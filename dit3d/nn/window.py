r"""Non-overlapping window partition of an ``n``-D token grid (Swin/DiT-3D style).

A grid of ``G = (g_1, ..., g_n)`` tokens, flattened row-major, is cut into windows of
``W = (w_1, ..., w_n)`` tokens (each ``w_i`` must divide ``g_i``). Partitioning keeps every
window inside one sample: the batch axis is never mixed with grid axes, which is the bug
that makes the DiT-3D reference window path attend across samples.

Token ``(i_1, ..., i_n)`` belongs to window ``(i_1 // w_1, ..., i_n // w_n)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor


def check_window(grid_size: Sequence[int], window_size: Sequence[int]) -> None:
    """Raise a clear error unless ``window_size`` tiles ``grid_size`` exactly."""
    if len(grid_size) != len(window_size):
        raise ValueError(
            f"window {tuple(window_size)} has {len(window_size)} axes but the token grid "
            f"{tuple(grid_size)} has {len(grid_size)}; pass a window with one size per grid axis"
        )
    bad = [(g, w) for g, w in zip(grid_size, window_size) if w < 1 or g % w]
    if bad:
        raise ValueError(
            f"window {tuple(window_size)} does not tile grid {tuple(grid_size)}: each window "
            f"size must divide its grid size (offending (grid, window) pairs: {bad})"
        )


def window_partition(x: Tensor, grid_size: Sequence[int], window_size: Sequence[int]) -> Tensor:
    """Cut each sample's token grid into windows.

    Shapes:
        x: ``(B, prod(G), C)`` -> ``(B * num_windows, prod(W), C)``
    """
    check_window(grid_size, window_size)
    n = len(grid_size)
    B, C = x.shape[0], x.shape[-1]
    split = [s for g, w in zip(grid_size, window_size) for s in (g // w, w)]
    x = x.reshape(B, *split, C)  # (B, g1/w1, w1, ..., gn/wn, wn, C)
    outer = [1 + 2 * i for i in range(n)]
    inner = [2 + 2 * i for i in range(n)]
    x = x.permute(0, *outer, *inner, 2 * n + 1)  # (B, g1/w1, ..., gn/wn, w1, ..., wn, C)
    return x.reshape(-1, prod(window_size), C)


def window_reverse(windows: Tensor, grid_size: Sequence[int], window_size: Sequence[int]) -> Tensor:
    """Inverse of :func:`window_partition`.

    Shapes:
        windows: ``(B * num_windows, prod(W), C)`` -> ``(B, prod(G), C)``
    """
    n = len(grid_size)
    C = windows.shape[-1]
    counts = [g // w for g, w in zip(grid_size, window_size)]
    x = windows.reshape(-1, *counts, *window_size, C)  # (B, g1/w1, ..., gn/wn, w1, ..., wn, C)
    order = [p for i in range(n) for p in (1 + i, 1 + n + i)]
    x = x.permute(0, *order, 2 * n + 1)  # (B, g1/w1, w1, ..., C)
    return x.reshape(-1, prod(grid_size), C)


def window_ids(grid_size: Sequence[int], window_size: Sequence[int]) -> Tensor:
    """Window index of every token of the row-major flattened grid.

    Shapes:
        -> ``(prod(G),)`` long
    """
    check_window(grid_size, window_size)
    coords = torch.meshgrid(*[torch.arange(g) for g in grid_size], indexing="ij")
    ids = torch.zeros(grid_size, dtype=torch.long)
    for c, g, w in zip(coords, grid_size, window_size):
        ids = ids * (g // w) + c // w
    return ids.reshape(-1)


def axes_window(grid_size: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """The window of attention *along* grid ``axes``: the whole extent of every axis in
    ``axes`` and 1 on the others, so each window holds the tokens that share their
    coordinates on all other axes (axial attention, Ho et al. 2019).

    For an ``(F, H, W)`` grid, ``axes=(1, 2)`` gives the window ``(1, H, W)`` (one slice
    of axis 0 at a time) and ``axes=(0,)`` the window ``(F, 1, 1)`` (one line along axis 0).

    Example:
        >>> axes_window((8, 4, 4), (1, 2)), axes_window((8, 4, 4), (0,))
        ((1, 4, 4), (8, 1, 1))
    """
    n = len(grid_size)
    axes = tuple(axes)
    bad = [a for a in axes if not 0 <= a < n]
    if not axes or bad or len(set(axes)) != len(axes):
        raise ValueError(f"attention axes {axes} must be distinct indices of the {n}-D token grid "
                         f"{tuple(grid_size)} (0..{n - 1}); pass a grid with as many axes as the layout names")
    return tuple(g if i in axes else 1 for i, g in enumerate(grid_size))


def window_attention_mask(grid_size: Sequence[int], window_size: Sequence[int]) -> Tensor:
    """Dense ``(T, T)`` boolean mask: token ``i`` may attend to ``j`` iff same window.

    Full attention under this mask is the slow reference that window attention must equal.
    """
    ids = window_ids(grid_size, window_size)
    return ids[:, None] == ids[None, :]
