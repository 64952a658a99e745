r"""Distance matrices between sets of point clouds (Chamfer and EMD), chunked to bound memory.

Part of the PointFlow-protocol metrics (overview in :mod:`dit3d.metrics.pointclouds`);
they judge outputs only. Pairs go through in chunks, each pair's distances in row tiles.

**Cost on this machine** (Xeon with AVX-512, one thread, N = 2048 points, float32,
unit-sized surface samples; a training run shared the machine): ``pairwise_cd`` of
64 x 64 clouds 11-16 s (2.7-3.8 ms per pair); approx ``pairwise_emd`` 64 x 64 under
``"pvd"`` 401 s (98 ms per pair; 90 ms in a later run), under ``"pointflow"`` 147 ms per
pair; peak resident memory of that run 420 MiB. The full chair protocol (662 samples,
662 references) needs 662^2 + 2 * 662 * 661 / 2 = 875,826 CD pairs, about 40-56 min on
one thread and roughly half on two, but 662^2 + 2 * 662 * 661 = 1,313,408 approx EMD
pairs (both orders within a set), about 33-36 h on one thread, 16-18 h on two (54 h /
27 h under ``"pointflow"``). Each pair costs ~10 rounds of an exponential and three
matrix-vector products over N^2 weights, so EMD of the full protocol wants a GPU
(``device``; not tested here) or the ``batch_size`` variant. Exact EMD takes ~0.6 s
per pair at N = 2048 (scipy), about 6 days on one thread for the full protocol.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from dit3d.metrics.pointcloud_distances import _TILE_FLOATS, _as_clouds, _cd_batch, _centred_pair, _check_choice
from dit3d.metrics.pointcloud_emd import EMD_CONVENTIONS, EMD_METHODS, _approxmatch_cost, _exact_cost

__all__ = ["PairwiseEMD", "evaluation_memory_bytes", "pairwise_cd", "pairwise_emd"]


class PairwiseEMD(NamedTuple):
    """EMD between every cloud of A and every cloud of B: ``matrix[i, j] = EMD(A[i], B[j])``."""

    matrix: np.ndarray
    method: str
    convention: str


def _check_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive int (pairs per batch), got {chunk!r}")
    return int(chunk)


def _pairs(m: int, k: int, within: bool, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs to compute: the (m, k) grid; within a set, ``i < j`` (symmetric) or ``i != j``."""
    if within and symmetric:
        return np.triu_indices(m, k=1)
    i, j = np.meshgrid(np.arange(m), np.arange(k), indexing="ij")
    keep = (i != j) if within else np.ones_like(i, dtype=bool)
    return i[keep], j[keep]


def _chunks(n: int, chunk: int, progress: bool, desc: str) -> Iterator[slice]:
    starts = range(0, n, chunk)
    if progress:
        from tqdm.auto import tqdm  # a dependency of the package; only needed for the bar

        starts = tqdm(starts, desc=desc, unit="chunk", total=math.ceil(n / chunk))
    for s in starts:
        yield slice(s, min(n, s + chunk))


def _pairwise(a: np.ndarray, b: np.ndarray | None, symmetric: bool, chunk: int, progress: bool, desc: str,
              batch_fn: Any, device: torch.device) -> np.ndarray:
    """Fill the (M, K) matrix, or the within-set (M, M) one (diagonal 0), chunk by chunk."""
    within = b is None
    bb = a if within else b
    m, k = len(a), len(bb)
    out = np.zeros((m, k), dtype=np.float64)
    ii, jj = _pairs(m, k, within, symmetric)
    ta, tb = torch.from_numpy(a), torch.from_numpy(bb)
    for sl in _chunks(len(ii), chunk, progress, desc):
        i, j = torch.from_numpy(ii[sl]), torch.from_numpy(jj[sl])
        out[ii[sl], jj[sl]] = batch_fn(ta[i], tb[j], device)
    if within and symmetric:
        out += out.T
    return out


def pairwise_cd(A: Any, B: Any | None = None, chunk: int = 4, progress: bool = False,
                device: str | torch.device = "cpu") -> np.ndarray:
    r"""Chamfer distances between every cloud of ``A`` and every cloud of ``B``.

    With ``B=None``, the within-set matrix of ``A``: pairs ``i < j`` are computed and
    mirrored, and the diagonal is 0.

    Peak extra memory, besides the ``(M, K)`` float64 result and two int64 pair indices
    per entry, is one distance tile of 2 MiB (``_TILE_FLOATS`` float32) plus the chunk's
    gathered clouds, ``chunk * (N + N') * 3 * 8`` bytes: pairs go through in chunks of
    ``chunk`` and each pair's ``(N, N')`` distances in row tiles.

    Args:
        A: ``(M, N, 3)`` clouds.
        B: ``(K, N', 3)`` clouds (point counts may differ from ``A``), or None.
        chunk: pairs per batch.
        progress: show a tqdm bar over chunks.
        device: torch device of the computation.

    Shapes:
        A: ``(M, N, 3)``, B: ``(K, N', 3)`` -> ``(M, K)``; B None -> ``(M, M)``

    Example:
        >>> A = np.array([[[0.0, 0, 0]], [[1.0, 0, 0]]])
        >>> pairwise_cd(A).tolist()  # single points: CD = 2 |a - b|^2
        [[0.0, 2.0], [2.0, 0.0]]
    """
    chunk = _check_chunk(chunk)
    a = _as_clouds(A, "A", batched=True)
    b = None if B is None else _as_clouds(B, "B", batched=True)
    dev = torch.device(device)

    def batch(x: Tensor, y: Tensor, d: torch.device) -> np.ndarray:
        return _cd_batch(*_centred_pair(x, y, d)).cpu().numpy()

    return _pairwise(a, b, True, chunk, progress, "CD", batch, dev)


def pairwise_emd(A: Any, B: Any | None = None, method: str = "approx", convention: str = "pvd",
                 chunk: int = 1, progress: bool = False, device: str | torch.device = "cpu") -> PairwiseEMD:
    r"""EMD between every cloud of ``A`` and every cloud of ``B`` (equal point counts).

    ``matrix[i, j] = EMD(A[i], B[j])`` with ``A[i]`` as approxmatch's ``xyz1`` (PointFlow
    puts the references there). With ``B=None``, the within-set matrix of ``A`` with a
    zero diagonal: ``"exact"`` computes pairs ``i < j`` and mirrors them; ``"approx"``
    computes both orders, as PointFlow does, since approxmatch is not symmetric (the two
    orders differed by up to 24% under ``"pvd"`` and 1.4% under ``"pointflow"`` on copies
    jittered by 20% of the point spacing, N = 256).

    Peak extra memory: ``"approx"`` holds ``2 * chunk * N^2`` float32 (squared distances
    and weights; ``4 * chunk * N^2`` under ``"pointflow"``, which adds the distances and a
    product buffer), and the product with the transposed weights can take a third copy:
    measured peaks reached ``3.2 * N^2`` float32 for one pair (tests/test_memory.py), so
    budget 48 MiB per pair at N = 2048 (80 MiB under ``"pointflow"``). ``"exact"`` goes
    pair by pair with ``3 * N^2`` float64. One pair per chunk was fastest on this CPU (by ~30% over
    chunks of 2 and 4).

    Args:
        A: ``(M, N, 3)`` clouds.
        B: ``(K, N, 3)`` clouds or None.
        method: ``"approx"`` or ``"exact"`` (see :func:`earth_movers_distance`).
        convention: ``"pvd"`` or ``"pointflow"`` (ground cost and rounds: :mod:`dit3d.metrics.pointcloud_emd`).
        chunk: pairs per batch of the approx computation.
        progress: show a tqdm bar over chunks.
        device: torch device of the approx computation.

    Returns:
        :class:`PairwiseEMD` ``(matrix, method, convention)``; ``matrix`` is ``(M, K)``
        (``(M, M)`` for ``B=None``).

    Example:
        >>> A = np.array([[[0.0, 0, 0], [1, 0, 0]], [[0.0, 1, 0], [1, 1, 0]]])
        >>> pairwise_emd(A, method="exact").matrix.tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    _check_choice(method, "method", EMD_METHODS)
    _check_choice(convention, "convention", tuple(EMD_CONVENTIONS))
    chunk = _check_chunk(chunk)
    a = _as_clouds(A, "A", batched=True)
    b = None if B is None else _as_clouds(B, "B", batched=True)
    if b is not None and a.shape[1] != b.shape[1]:
        raise ValueError(f"EMD needs equal point counts, got {a.shape[1]} points per cloud in A and "
                         f"{b.shape[1]} in B; resample the clouds to a common N first")
    squared, levels = EMD_CONVENTIONS[convention]

    if method == "exact":
        def batch(x: Tensor, y: Tensor, d: torch.device) -> np.ndarray:
            return np.array([_exact_cost(p, q, squared) for p, q in zip(x.numpy(), y.numpy())])
    else:
        def batch(x: Tensor, y: Tensor, d: torch.device) -> np.ndarray:
            return _approxmatch_cost(*_centred_pair(x, y, d), squared, levels).cpu().numpy()

    # approxmatch is not symmetric in its arguments: within a set both orders are computed.
    m = _pairwise(a, b, method == "exact", chunk, progress, f"EMD ({method})", batch, torch.device(device))
    return PairwiseEMD(m, method, convention)


def evaluation_memory_bytes(m: int, k: int, n_points: int, emd: str | None = "approx", convention: str = "pvd",
                            chunk: int = 1) -> int:
    """Upper estimate of the extra memory (bytes) of the full protocol on ``m`` samples and
    ``k`` references of ``n_points`` each, as :func:`~dit3d.metrics.evaluate_pointclouds`
    computes it: the clouds and a normalised copy (float32), the three ``(M+K)``-square
    blocks of each distance kind (float64 values and int64 pair indices), and the larger
    of the Chamfer working set (a 2 MiB tile and the chunk's clouds) and the EMD one
    (approx: ``3 * chunk * N^2`` float32, ``5 *`` under ``"pointflow"``: the arrays of
    :func:`pairwise_emd` and a transposed copy; exact: ``3 * N^2`` float64), plus 10%
    and 1 MiB for small temporaries (checked against measured peaks in tests/test_memory.py).

    Example:
        >>> round(evaluation_memory_bytes(662, 662, 2048) / 2**20)  # the full chair protocol, MiB
        210
    """
    clouds = 2 * (m + k) * n_points * 3 * 4
    kinds = 1 if emd is None else 2
    blocks = kinds * (m + k) ** 2 * (8 + 2 * 8)
    cd = 4 * _TILE_FLOATS + 4 * n_points * 3 * 8 * 2
    if emd is None:
        work = cd
    elif emd == "exact":
        work = max(cd, 3 * n_points**2 * 8)
    else:
        work = max(cd, (5 if convention == "pointflow" else 3) * chunk * n_points**2 * 4 + 16 * chunk * n_points * 4)
    return int(1.1 * (clouds + blocks + work)) + 2**20  # small temporaries and allocator slack
