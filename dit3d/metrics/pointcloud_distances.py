r"""Chamfer distance between point clouds, and the input checks every point-cloud metric shares.

Part of the PointFlow-protocol metrics (overview in :mod:`dit3d.metrics.pointclouds`);
they judge outputs only. Inputs are clouds as arrays ``(N, 3)`` or ``(S, N, 3)`` (numpy
or torch); everything runs in torch, vectorised over pairs of clouds.

*Chamfer distance* between clouds :math:`X, Y \subset \mathbb{R}^3` (PointFlow, Yang et
al. 2019, arXiv 1906.12320, evaluation metrics of its experiments; the ``EMD_CD`` code of
PointFlow, PVD and DiT-3D sums ``dl.mean(1) + dr.mean(1)`` of squared nearest-neighbour
distances):

.. math::
    \mathrm{CD}(X, Y) = \frac{1}{|X|}\sum_{x \in X}\min_{y \in Y}\lVert x-y\rVert_2^2
                      + \frac{1}{|Y|}\sum_{y \in Y}\min_{x \in X}\lVert x-y\rVert_2^2
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["CD_DEFINITION", "chamfer_distance"]

CD_DEFINITION = ("mean over X of min_y ||x-y||^2 + mean over Y of min_x ||x-y||^2 "
                 "(squared Euclidean, PointFlow/PVD/DiT-3D)")

#: largest coordinate accepted: distances are computed in float32, whose squares overflow near 1e19
MAX_COORDINATE = 1e15

# Row tiles of the (P, n, m) distance computations hold about this many floats (2 MiB),
# so that their temporaries stay in L2.
_TILE_FLOATS = 1 << 19


# --------------------------------------------------------------------------- inputs


def _as_clouds(x: Any, name: str, batched: bool | None = None) -> np.ndarray:
    """float64 array ``(S, N, 3)`` (or ``(N, 3)`` when ``batched`` is False), validated."""
    if isinstance(x, Tensor):
        if x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold real coordinates, got a {x.dtype} tensor")
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        raw = np.asarray(x)
        if raw.dtype.kind not in "fiu":
            raise TypeError(f"{raw.dtype} data, not real numbers")
        a = raw.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array of point clouds, got {type(x).__name__}: {e}") from None
    want = {None: "(N, 3) or (S, N, 3)", True: "(S, N, 3)", False: "(N, 3)"}[batched]
    ndim_ok = a.ndim in (2, 3) if batched is None else a.ndim == (3 if batched else 2)
    if not ndim_ok or a.shape[-1] != 3:
        raise ValueError(f"{name} must have shape {want} (clouds of 3D points), got {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); give at least one cloud of at least one point")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf; drop or fix those clouds before evaluating")
    if np.abs(a).max() > MAX_COORDINATE:
        raise ValueError(f"{name} has coordinates up to {np.abs(a).max():.3g}; squared distances would overflow the "
                         f"float32 computation (limit {MAX_COORDINATE:g}): rescale the clouds")
    return a


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _centred_pair(a: Tensor, b: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Translate each pair by a common vector (distances do not change) and cast to float32.

    Centring in float64 first keeps float32 exact enough for clouds far from the origin,
    and makes the ``|x|^2 + |y|^2 - 2 x.y`` expansion lose less to cancellation.
    """
    c = 0.5 * (a.mean(1, keepdim=True) + b.mean(1, keepdim=True))
    return (a - c).to(device, torch.float32), (b - c).to(device, torch.float32)


# --------------------------------------------------------------------------- Chamfer


def _cd_batch(x: Tensor, y: Tensor) -> Tensor:
    """Chamfer distances of ``P`` pairs ``(P, n, 3)``, ``(P, m, 3)`` -> ``(P,)`` float64.

    Squared distances come from one GEMM per row tile, ``[x, |x|^2, 1] . [-2y, 1, |y|^2]``,
    in tiles of about 2 MiB so that the two minimum reductions read them from cache.
    """
    P, n, _ = x.shape
    m = y.shape[1]
    one_x, one_y = x.new_ones(P, n, 1), y.new_ones(P, m, 1)
    xa = torch.cat([x, x.square().sum(-1, keepdim=True), one_x], -1)  # (P, n, 5)
    ya = torch.cat([-2.0 * y, one_y, y.square().sum(-1, keepdim=True)], -1).transpose(1, 2).contiguous()  # (P, 5, m)
    row = torch.empty(P, n, dtype=x.dtype, device=x.device)
    col = torch.full((P, m), math.inf, dtype=x.dtype, device=x.device)
    tile = max(1, _TILE_FLOATS // (P * m))
    for k in range(0, n, tile):
        d2 = torch.bmm(xa[:, k:k + tile], ya)  # (P, t, m)
        row[:, k:k + tile] = d2.amin(2)
        torch.minimum(col, d2.amin(1), out=col)
    # Rounding of the expansion can dip below zero for coincident points.
    return row.clamp_(min=0).double().mean(1) + col.clamp_(min=0).double().mean(1)


def chamfer_distance(x: Any, y: Any) -> float | np.ndarray:
    r"""Chamfer distance (squared nearest-neighbour distances, both directions, summed).

    .. math::
        \mathrm{CD}(X, Y) = \frac{1}{|X|}\sum_{x}\min_{y}\lVert x-y\rVert^2
                          + \frac{1}{|Y|}\sum_{y}\min_{x}\lVert x-y\rVert^2

    Computed in float32 after centring the pair; the absolute error is about
    :math:`10^{-7} R^2` for clouds of radius :math:`R` about their common centre.

    Args:
        x: one cloud ``(N, 3)`` or a batch ``(B, N, 3)``.
        y: one cloud ``(M, 3)`` or a batch ``(B, M, 3)``; sizes may differ from ``x``.

    Shapes:
        x: ``(N, 3)``, y: ``(M, 3)`` -> float; x: ``(B, N, 3)``, y: ``(B, M, 3)`` -> ``(B,)``

    Example:
        >>> chamfer_distance([[0.0, 0, 0]], [[1.0, 0, 0], [2.0, 0, 0]])  # 1 + (1 + 4) / 2
        3.5
    """
    a, b = _as_clouds(x, "x"), _as_clouds(y, "y")
    if a.ndim != b.ndim or (a.ndim == 3 and len(a) != len(b)):
        raise ValueError(f"x and y must both be single clouds or batches of the same length, "
                         f"got {a.shape} and {b.shape}")
    single = a.ndim == 2
    ta, tb = torch.from_numpy(a if not single else a[None]), torch.from_numpy(b if not single else b[None])
    xs, ys = _centred_pair(ta, tb, torch.device("cpu"))
    cd = _cd_batch(xs, ys).numpy()
    return float(cd[0]) if single else cd

