r"""Point-cloud generation metrics of the PointFlow protocol; they judge outputs only.

Inputs are sets of clouds as arrays ``(S, N, 3)`` (numpy or torch); no model is involved.
Everything runs in torch on the CPU (or on ``device``), vectorised over pairs of clouds
and chunked so that memory stays bounded.

**Distances between two clouds** :math:`X, Y \subset \mathbb{R}^3`:

* *Chamfer distance* (PointFlow, Yang et al. 2019, arXiv 1906.12320, evaluation metrics
  of its experiments; the ``EMD_CD`` code of PointFlow, PVD and DiT-3D sums
  ``dl.mean(1) + dr.mean(1)`` of squared nearest-neighbour distances):

  .. math::
      \mathrm{CD}(X, Y) = \frac{1}{|X|}\sum_{x \in X}\min_{y \in Y}\lVert x-y\rVert_2^2
                        + \frac{1}{|Y|}\sum_{y \in Y}\min_{x \in X}\lVert x-y\rVert_2^2

* *Earth mover's distance* between clouds of equal size :math:`N`, over bijections
  :math:`\phi: X \to Y`, with a ground cost :math:`c` fixed by the *convention*:

  .. math::
      \mathrm{EMD}(X, Y) = \min_{\phi} \frac{1}{N}\sum_{x \in X} c(x, \phi(x))

  The published numbers come from two descendants of the ``approxmatch`` CUDA kernel of
  Fan et al. 2017 ("A Point Set Generation Network", CVPR), which differ in two ways
  (read in their released code):

  ====================  ===================================  ==============================
  convention            ground cost :math:`c(x, y)`          approxmatch rounds
  ====================  ===================================  ==============================
  ``"pvd"`` (default)   :math:`\lVert x-y\rVert_2^2`         :math:`\lambda=-4^{7},\dots,-4^{-1}`, then 0
  ``"pointflow"``       :math:`\lVert x-y\rVert_2`           :math:`\lambda=-4^{7},\dots,-4^{-1}`
  ====================  ===================================  ==============================

  ``"pvd"`` is PyTorchEMD (K. Mo's port, ``matchcost`` sums ``match * d^2``) as used by
  PVD, LION and DiT-3D, whose copies divide its cost by N (the original PyTorchEMD
  returns the sum). ``"pointflow"`` is
  PointFlow's ``StructuralLosses`` (``matchcost`` sums ``match * sqrtf(d^2)``, and
  ``emd_approx`` divides by N); its kernel loop is ``for (j=7; j>-2; j--)``, so the final
  :math:`\lambda=0` round of the other kernels (which hands out all remaining mass) is not
  run, and mass left unmatched after :math:`\lambda=-1/4` costs nothing.

  Two implementations, named in every result:

  - ``"exact"``: the optimal bijection, :func:`scipy.optimize.linear_sum_assignment` on
    the :math:`N \times N` cost matrix in float64; :math:`O(N^3)`, for small clouds and
    tests (~0.6 s per pair at N = 2048).
  - ``"approx"``: the ``approxmatch`` auction-like algorithm, from remaining masses
    :math:`a = b = \mathbf{1}` and for each round :math:`\lambda`, with
    :math:`W_{kl} = e^{\lambda \lVert x_k - y_l\rVert^2}`:

    .. math::
        r_k = \frac{a_k}{10^{-9} + \sum_l W_{kl} b_l}, \quad
        s_l = b_l \sum_k W_{kl} r_k, \quad
        q_l = b_l \min\!\Big(\frac{b_l}{s_l + 10^{-9}}, 1\Big), \quad
        b_l \leftarrow \max(0, b_l - s_l),

    .. math::
        P_{kl} \mathrel{+}= W_{kl}\, r_k\, q_l, \quad
        a_k \leftarrow \max\!\Big(0, a_k - \sum_l W_{kl} r_k q_l\Big),
        \qquad \mathrm{EMD} \approx \frac{1}{N}\sum_{kl} P_{kl}\, c(x_k, y_l).

    :math:`P` never exceeds the marginals, so with the final :math:`\lambda = 0` round it
    is a (fractional) transport plan and the value is an upper bound of the exact EMD, up
    to float32 rounding and the :math:`10^{-9}` guards. ``X`` is the kernel's ``xyz1``;
    the algorithm is not symmetric in its arguments.

  The rounds use absolute :math:`\lambda` (units of 1/length^2), tuned to unit-sized
  shapes of ~2k points: the value depends on the clouds' scale, so it changes with
  ``normalization``. On unit-sized data the ``"pointflow"`` kernel leaves < 1e-6 of the
  mass unmatched after its last round (measured), so its plan is nearly full too.

  approxmatch is far from the optimum under the squared cost. Observed approx / exact
  (same convention, float32 vs float64):

  ========================================================  ===========  ===========
  pairs                                                     ``"pvd"``    ``"pointflow"``
  ========================================================  ===========  ===========
  N=256, independent uniform clouds in the unit cube (20)   2.06-3.31    1.21-1.29
  N=256, copy jittered by 10% of the point spacing (20)     1.009-1.081  1.004-1.016
  N=256, translate by 0.1 (spacing 0.16) (20)               5.8-7.4      1.48-1.58
  N=2048, two samplings of one unit-sized surface (4)       5.9-9.1      1.43-1.46
  N=2048, two different unit-sized surfaces (4)             2.8-3.2      1.25-1.32
  N=2048, a surface sample and its translate by 0.05 (4)    6.5-13.7     1.35-1.43
  ========================================================  ===========  ===========

  So approx and exact values are not interchangeable; published EMD numbers are approx.

**Generative metrics** (PointFlow's definitions, as in its ``compute_all_metrics``, which
PVD, LION and DiT-3D reuse), from the
distance matrices sample-reference :math:`D_{SR}` ``(M, K)``, sample-sample
:math:`D_{SS}` ``(M, M)`` and reference-reference :math:`D_{RR}` ``(K, K)``:

.. math::
    \mathrm{MMD} = \frac{1}{K}\sum_{j}\min_{i} D_{SR}[i, j], \qquad
    \mathrm{COV} = \frac{|\{\arg\min_j D_{SR}[i, j] : i\}|}{K},

and 1-NNA is the accuracy of the leave-one-out 1-nearest-neighbour classifier on
:math:`S \cup R` (each cloud takes the label of its nearest other cloud; its distance to
itself is excluded): 0.5 is ideal, 1 means the sets are separable, and 0 happens when
every sample is a near copy of a reference. COV and 1-NNA are fractions in [0, 1]; MMD
is in the units of the distance. Exact ties among nearest neighbours (duplicated clouds) are
broken at random with ``seed``.

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
import platform
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import scipy
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = [
    "EMD_CONVENTIONS", "EMDResult", "PairwiseEMD", "chamfer_distance", "earth_movers_distance",
    "evaluate_pointclouds", "generative_metrics", "normalize_pointclouds", "pairwise_cd", "pairwise_emd",
]

# convention -> (squared ground cost?, approxmatch rounds lambda). See the module docstring.
EMD_CONVENTIONS: dict[str, tuple[bool, tuple[float, ...]]] = {
    "pvd": (True, tuple(-(4.0 ** j) for j in range(7, -2, -1)) + (0.0,)),
    "pointflow": (False, tuple(-(4.0 ** j) for j in range(7, -2, -1))),
}
EMD_METHODS = ("approx", "exact")
NORMALIZATIONS = ("none", "global", "per-shape")

CD_DEFINITION = ("mean over X of min_y ||x-y||^2 + mean over Y of min_x ||x-y||^2 "
                 "(squared Euclidean, PointFlow/PVD/DiT-3D)")
NORMALIZATION_DEFINITIONS = {
    "none": "clouds used as given",
    "global": ("x -> (x - mu) / s for samples and references, mu = per-axis mean of all reference points, "
               "s = population std of all reference coordinates flattened (one scalar), as PointFlow's "
               "ShapeNet15kPointClouds with normalize_std_per_axis=False (there over the training set)"),
    "per-shape": ("each cloud x -> (x - c) / r, c = mean of its points, r = largest distance of a point to c "
                  "(points in the unit ball, at least one on the unit sphere)"),
}

# Exponent floor for the approxmatch weights. exp(-60) = 8.7e-27: a weight the CUDA
# kernel flushes to zero (below exp(-87.3)) is off by at most that, which moves the
# transported mass by < N^2 * 8.7e-27 * 1e9 (the largest ratio the 1e-9 guard allows),
# ~4e-11 at N = 2048. Without the floor, torch's exp meets arguments far below -87 in the
# sharp rounds and runs ~17x slower on this CPU.
_EXP_FLOOR = -60.0
# Row tiles of the (P, n, m) distance computations hold about this many floats (2 MiB),
# so that their temporaries stay in L2.
_TILE_FLOATS = 1 << 19


class EMDResult(NamedTuple):
    """EMD of one pair (``value`` a float) or of a batch of pairs (``value`` an array ``(B,)``)."""

    value: float | np.ndarray
    method: str
    convention: str


class PairwiseEMD(NamedTuple):
    """EMD between every cloud of A and every cloud of B: ``matrix[i, j] = EMD(A[i], B[j])``."""

    matrix: np.ndarray
    method: str
    convention: str


# --------------------------------------------------------------------------- inputs


def _as_clouds(x: Any, name: str, batched: bool | None = None) -> np.ndarray:
    """float64 array ``(S, N, 3)`` (or ``(N, 3)`` when ``batched`` is False), validated."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
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
    return a


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


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


# --------------------------------------------------------------------------- EMD


def _sqdist(x: Tensor, y: Tensor) -> Tensor:
    """Squared distances ``(P, n, m)`` from coordinate differences, as the CUDA kernels do.

    No ``|x|^2 + |y|^2 - 2 x.y`` expansion here: the sharp rounds multiply d^2 by up to
    16384, and the Euclidean ground cost takes its square root, so cancellation would show.
    Row tiles keep the broadcast temporaries in cache.
    """
    P, n, _ = x.shape
    m = y.shape[1]
    xc = x.permute(2, 0, 1).contiguous()  # (3, P, n)
    yc = y.permute(2, 0, 1).contiguous()  # (3, P, m)
    d2 = torch.empty(P, n, m, dtype=x.dtype, device=x.device)
    tile = max(1, _TILE_FLOATS // (P * m))
    tmp = torch.empty(P, min(tile, n), m, dtype=x.dtype, device=x.device)
    for k in range(0, n, tile):
        out, t = d2[:, k:k + tile], tmp[:, :min(tile, n - k)]
        torch.sub(xc[0, :, k:k + tile, None], yc[0, :, None, :], out=out).square_()
        for c in (1, 2):
            torch.sub(xc[c, :, k:k + tile, None], yc[c, :, None, :], out=t)
            out.addcmul_(t, t)
    return d2


def _approxmatch_cost(x: Tensor, y: Tensor, squared: bool, levels: tuple[float, ...]) -> Tensor:
    """Mean matched cost of ``approxmatch`` for ``P`` pairs of equal size -> ``(P,)`` float64.

    Follows the update rules of the module docstring round by round. The plan is never
    stored: each round adds ``sum_k r_k sum_l W_kl c_kl q_l`` to the cost. Per round this
    is one exponential of the ``(n, n)`` weights and three matrix-vector products.
    """
    P, n, _ = x.shape
    d2 = _sqdist(x, y)  # (P, n, n)
    rem_l = x.new_ones(P, n)  # a: left mass not matched yet
    rem_r = x.new_ones(P, n)  # b: right capacity left
    total = torch.zeros(P, dtype=torch.float64, device=x.device)
    w = torch.empty_like(d2)
    # Rounds whose arguments all stay above the floor skip the clamp pass.
    d2_max = float(d2.amax())
    if squared:
        # sum_l W_kl d2_kl q_l = |x_k|^2 (Wq)_k + (W(q|y|^2))_k - 2 x_k . (W(q y))_k: one
        # product with five columns gives the row sums and the cost, without a W * d2 pass.
        # Exact algebra; float32 rounding of the expansion is ~1e-7 |x|^2 (pairs are centred).
        xx, yy = x.square().sum(-1), y.square().sum(-1)  # (P, n)
        q5 = x.new_empty(P, 5, n)
    else:
        dist = d2.sqrt()
        wc = torch.empty_like(d2)
    for lam in levels:
        flat = lam == 0.0  # W = 1: every weighted sum is a plain sum
        if flat:
            ratio_l = rem_l / (rem_r.sum(1, keepdim=True) + 1e-9)
            demand = ratio_l.sum(1, keepdim=True) * rem_r
        else:
            torch.mul(d2, lam, out=w)
            if lam * d2_max < _EXP_FLOOR:
                w.clamp_(min=_EXP_FLOOR)
            w.exp_()
            ratio_l = rem_l / (torch.bmm(w, rem_r.unsqueeze(2)).squeeze(2) + 1e-9)
            demand = torch.bmm(ratio_l.unsqueeze(1), w).squeeze(1) * rem_r
        ratio_r = torch.clamp(rem_r / (demand + 1e-9), max=1.0) * rem_r
        rem_r = torch.clamp(rem_r - demand, min=0.0)
        if squared:
            q5[:, 0] = ratio_r
            torch.mul(ratio_r, yy, out=q5[:, 1])
            torch.mul(ratio_r.unsqueeze(1), y.transpose(1, 2), out=q5[:, 2:])
            # (W q)^T = q^T W^T: the transposed product streams W along its rows.
            g = q5.sum(2, keepdim=True).expand(P, 5, n) if flat else torch.bmm(q5, w.transpose(1, 2))  # (P, 5, n)
            used = g[:, 0]
            matched_cost = xx * used + g[:, 1] - 2.0 * (x.transpose(1, 2) * g[:, 2:]).sum(1)
        elif flat:
            used = ratio_r.sum(1, keepdim=True).expand(P, n)
            matched_cost = torch.bmm(dist, ratio_r.unsqueeze(2)).squeeze(2)
        else:
            used = torch.bmm(w, ratio_r.unsqueeze(2)).squeeze(2)
            matched_cost = torch.bmm(torch.mul(w, dist, out=wc), ratio_r.unsqueeze(2)).squeeze(2)
        rem_l = torch.clamp(rem_l - ratio_l * used, min=0.0)
        total += (ratio_l * matched_cost).sum(1, dtype=torch.float64)
    return total / n


def _exact_cost(x: np.ndarray, y: np.ndarray, squared: bool) -> float:
    """Optimal bijection cost over N, float64 (scipy's Hungarian-type solver)."""
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    c = d2 if squared else np.sqrt(d2)
    rows, cols = linear_sum_assignment(c)
    return float(c[rows, cols].sum() / len(x))


def earth_movers_distance(x: Any, y: Any, method: str = "approx", convention: str = "pvd",
                          device: str | torch.device = "cpu") -> EMDResult:
    r"""EMD between clouds of equal size, exact or by ``approxmatch`` (see the module docstring).

    .. math::
        \mathrm{EMD}(X, Y) = \min_{\phi: X \to Y \text{ bijective}} \frac{1}{N}\sum_{x} c(x, \phi(x)),
        \quad c = \lVert x-y\rVert^2 \ (\texttt{"pvd"}) \text{ or } \lVert x-y\rVert \ (\texttt{"pointflow"})

    Args:
        x: one cloud ``(N, 3)`` or a batch ``(B, N, 3)``; the ``xyz1`` of approxmatch.
        y: same shape as ``x``.
        method: ``"approx"`` (approxmatch, float32, an upper bound under ``"pvd"``) or
            ``"exact"`` (optimal matching, float64, :math:`O(N^3)` per pair).
        convention: ``"pvd"`` (PVD, LION, DiT-3D) or ``"pointflow"``.
        device: torch device of the approx computation.

    Returns:
        :class:`EMDResult` ``(value, method, convention)``; ``value`` is a float for one
        pair and an array ``(B,)`` for a batch.

    Example:
        >>> x, y = [[0.0, 0, 0], [1.0, 0, 0]], [[1.0, 1, 0], [0.0, 1, 0]]
        >>> earth_movers_distance(x, y, method="exact")
        EMDResult(value=1.0, method='exact', convention='pvd')
        >>> round(earth_movers_distance(x, y).value, 3)  # approxmatch: an upper bound
        1.0
    """
    _check_choice(method, "method", EMD_METHODS)
    _check_choice(convention, "convention", tuple(EMD_CONVENTIONS))
    a, b = _as_clouds(x, "x"), _as_clouds(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"EMD needs clouds of the same shape (a bijection between equal point counts), "
                         f"got {a.shape} and {b.shape}; resample the clouds to a common N first")
    single = a.ndim == 2
    if single:
        a, b = a[None], b[None]
    squared, levels = EMD_CONVENTIONS[convention]
    if method == "exact":
        v = np.array([_exact_cost(p, q, squared) for p, q in zip(a, b)])
    else:
        xs, ys = _centred_pair(torch.from_numpy(a), torch.from_numpy(b), torch.device(device))
        v = _approxmatch_cost(xs, ys, squared, levels).cpu().numpy()
    return EMDResult(float(v[0]) if single else v, method, convention)


# --------------------------------------------------------------------------- pairwise


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
    product buffer): 32 MiB per pair at N = 2048 (64 MiB). ``"exact"`` goes pair by pair
    with ``3 * N^2`` float64. One pair per chunk was fastest on this CPU (by ~30% over
    chunks of 2 and 4).

    Args:
        A: ``(M, N, 3)`` clouds.
        B: ``(K, N, 3)`` clouds or None.
        method: ``"approx"`` or ``"exact"`` (see :func:`earth_movers_distance`).
        convention: ``"pvd"`` or ``"pointflow"`` (ground cost and rounds; module docstring).
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


# --------------------------------------------------------------------------- metrics


def _argmin_random_ties(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmin; among exactly equal minima one is drawn uniformly."""
    best = d.min(1, keepdims=True)
    tied = d == best
    idx = tied.argmax(1)
    for r in np.flatnonzero(tied.sum(1) > 1):
        idx[r] = rng.choice(np.flatnonzero(tied[r]))
    return idx


def _check_matrix(d: Any, name: str, shape: tuple[int, int], diagonal_free: bool = False) -> np.ndarray:
    a = np.asarray(d, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    body = a[~np.eye(*shape, dtype=bool)] if diagonal_free else a
    if not np.isfinite(body).all():
        raise ValueError(f"{name} contains NaN or inf off its diagonal; recompute the distances from finite clouds")
    if (body < 0).any():
        raise ValueError(f"{name} has negative entries; distances must be >= 0")
    return a


def generative_metrics(d_sr: Any, d_ss: Any, d_rr: Any, seed: int = 0) -> dict[str, float]:
    r"""MMD, COV and 1-NNA from the three distance matrices (PointFlow's definitions).

    .. math::
        \mathrm{MMD} = \frac{1}{K}\sum_j \min_i D_{SR}[i,j], \quad
        \mathrm{COV} = \frac{|\{\arg\min_j D_{SR}[i,j]\}_i|}{K}, \quad
        \text{1-NNA} = \frac{1}{M+K}\sum_{z \in S \cup R}
            \mathbb{1}[\,\ell(\mathrm{NN}(z)) = \ell(z)\,]

    where :math:`\mathrm{NN}(z)` is the nearest cloud to :math:`z` in :math:`S \cup R`
    other than :math:`z` (the diagonals of :math:`D_{SS}, D_{RR}` are ignored) and
    :math:`\ell` its set. Exactly tied minima are broken at random with ``seed``.

    Args:
        d_sr: sample-reference distances ``(M, K)``.
        d_ss: sample-sample distances ``(M, M)``.
        d_rr: reference-reference distances ``(K, K)``.
        seed: seeds the tie-breaking.

    Returns:
        ``{"MMD", "COV", "1-NNA"}`` as floats; COV and 1-NNA are fractions in [0, 1].

    Example:
        >>> d_sr = np.array([[0.0, 5.0], [5.0, 0.0]])  # each sample is a reference's twin
        >>> d_ss = d_rr = np.array([[0.0, 5.0], [5.0, 0.0]])
        >>> generative_metrics(d_sr, d_ss, d_rr)
        {'MMD': 0.0, 'COV': 1.0, '1-NNA': 0.0}
    """
    a = np.asarray(d_sr, dtype=np.float64)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"d_sr must be a non-empty (M, K) matrix, got shape {a.shape}")
    m, k = a.shape
    d_sr = _check_matrix(a, "d_sr", (m, k))
    d_ss = _check_matrix(d_ss, "d_ss", (m, m), diagonal_free=True)
    d_rr = _check_matrix(d_rr, "d_rr", (k, k), diagonal_free=True)
    rng = np.random.default_rng(seed)
    mmd = float(d_sr.min(0).mean())
    cov = len(np.unique(_argmin_random_ties(d_sr, rng))) / k
    full = np.block([[d_ss, d_sr], [d_sr.T, d_rr]])
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.zeros(m, bool), np.ones(k, bool)]  # True = reference
    # Neighbours of cloud z are read in column z, as PointFlow's knn (topk over dim 0): for
    # an asymmetric EMD, z is then the second argument of every distance it is judged by.
    nearest = _argmin_random_ties(full.T, rng)
    nna = float((labels[nearest] == labels).mean())
    return {"MMD": mmd, "COV": float(cov), "1-NNA": nna}


def normalize_pointclouds(samples: Any, references: Any, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    r"""Apply one of ``"none"``, ``"global"``, ``"per-shape"`` (``NORMALIZATION_DEFINITIONS``).

    ``"global"`` uses statistics of the references only and applies them to both sets, so
    the samples are judged in the references' frame; it rescales CD by ``1/s^2`` and exact
    EMD by ``1/s^2`` (``"pvd"``) or ``1/s`` (``"pointflow"``) and leaves their COV and
    1-NNA as they are. Approx EMD is not scale-equivariant (its rounds use absolute
    :math:`\lambda`), so all three of its metrics can change. ``"per-shape"`` removes each
    cloud's position and size.

    Shapes:
        samples: ``(M, N, 3)``, references: ``(K, N', 3)`` -> the same shapes, float64

    Example:
        >>> s, r = normalize_pointclouds([[[0.0, 0, 0], [4, 0, 0]]], [[[1.0, 1, 1], [1, 1, 3]]], "per-shape")
        >>> s[0].tolist(), r[0].tolist()
        ([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]])
    """
    _check_choice(normalization, "normalization", NORMALIZATIONS)
    s = _as_clouds(samples, "samples", batched=True)
    r = _as_clouds(references, "references", batched=True)
    if normalization == "none":
        return s, r
    if normalization == "global":
        mu = r.reshape(-1, 3).mean(0)
        sd = float(r.std())
        if not sd > 0:
            raise ValueError("global normalisation needs references with spread (their coordinate std is 0); "
                             "use normalization='none'")
        return (s - mu) / sd, (r - mu) / sd

    def per_shape(x: np.ndarray, name: str) -> np.ndarray:
        c = x - x.mean(1, keepdims=True)
        radius = np.sqrt((c ** 2).sum(-1)).max(1)  # (S,)
        flat = np.flatnonzero(radius == 0)
        if len(flat):
            raise ValueError(f"{name} {flat.tolist()[:5]} are single repeated points and cannot be scaled to the "
                             "unit sphere; drop them or use normalization='none'")
        return c / radius[:, None, None]

    return per_shape(s, "samples"), per_shape(r, "references")


def _versions() -> dict[str, str]:
    import dit3d

    return {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "dit3d": dit3d.__version__, "python": platform.python_version()}


def _metrics_for(s: np.ndarray, r: np.ndarray, emd: str | None, convention: str, seed: int,
                 progress: bool, device: torch.device) -> dict[str, dict[str, float] | None]:
    cd = generative_metrics(pairwise_cd(s, r, progress=progress, device=device),
                            pairwise_cd(s, progress=progress, device=device),
                            pairwise_cd(r, progress=progress, device=device), seed)
    if emd is None:
        return {"CD": cd, "EMD": None}
    kw = dict(method=emd, convention=convention, progress=progress, device=device)
    # References first, as PointFlow's compute_all_metrics (M_rs), then transposed.
    d_sr = pairwise_emd(r, s, **kw).matrix.T
    em = generative_metrics(d_sr, pairwise_emd(s, **kw).matrix, pairwise_emd(r, **kw).matrix, seed)
    return {"CD": cd, "EMD": em}


def evaluate_pointclouds(samples: Any, references: Any, emd: str | None = "approx", normalization: str = "none",
                         seed: int = 0, batch_size: int | None = None, progress: bool = False,
                         emd_convention: str = "pvd", device: str | torch.device = "cpu") -> dict[str, Any]:
    """MMD, COV and 1-NNA under CD and EMD, the PointFlow / PVD / LION / DiT-3D protocol.

    Args:
        samples: generated clouds ``(M, N, 3)``.
        references: reference clouds ``(K, N, 3)`` (same N: EMD is a bijection).
        emd: ``"approx"`` (approxmatch, as published), ``"exact"`` (small N only), or
            None to skip EMD (its cost dominates; see the module docstring).
        normalization: ``"none"`` (the published protocol: both sets in the dataset's
            frame), ``"global"`` or ``"per-shape"`` (``NORMALIZATION_DEFINITIONS``).
        seed: seeds the tie-breaking among exactly equal distances.
        batch_size: None (default) compares the full sets, as PointFlow, PVD, LION and
            DiT-3D's ``compute_all_metrics``; an int computes the metrics within
            consecutive batches ``samples[b:b+n]`` vs ``references[b:b+n]`` (needs M == K)
            and averages them weighted by batch size (the last batch may be smaller).
        progress: tqdm bars over the distance matrices.
        emd_convention: ``"pvd"`` (squared ground cost; PVD, LION, DiT-3D) or
            ``"pointflow"`` (Euclidean; PointFlow).
        device: torch device of the distance computations.

    Returns:
        ``{"CD": {"MMD", "COV", "1-NNA"}, "EMD": {...} or None, "protocol": {...}}``;
        the protocol records the definitions, normalisation, EMD method and convention,
        counts, seed, batching and package versions.

    Example:
        >>> refs = np.stack([np.eye(3) * (k + 1) for k in range(3)])  # 3 clouds of 3 points
        >>> out = evaluate_pointclouds(refs.copy(), refs, emd="exact")
        >>> out["CD"]["COV"], out["CD"]["1-NNA"], out["EMD"]["1-NNA"], out["protocol"]["emd"]["method"]
        (1.0, 0.0, 0.0, 'exact')
    """
    if emd is not None:
        _check_choice(emd, "emd", EMD_METHODS)
    _check_choice(emd_convention, "emd_convention", tuple(EMD_CONVENTIONS))
    s, r = normalize_pointclouds(samples, references, normalization)
    if emd is not None and s.shape[1] != r.shape[1]:
        raise ValueError(f"samples have {s.shape[1]} points per cloud and references {r.shape[1]}; EMD needs equal "
                         "counts: resample to a common N (2048 in the published protocol) or pass emd=None")
    m, k = len(s), len(r)
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be None or a positive int, got {batch_size!r}")
        if m != k:
            raise ValueError(f"batch_size pairs samples[b:b+n] with references[b:b+n], so it needs as many samples as "
                             f"references, got {m} and {k}; pass batch_size=None for the full-set protocol")
    dev = torch.device(device)
    starts = [0] if batch_size is None else list(range(0, m, int(batch_size)))
    weights, parts = [], []
    for b0 in starts:
        b1 = max(m, k) if batch_size is None else min(m, b0 + int(batch_size))
        parts.append(_metrics_for(s[b0:b1], r[b0:b1], emd, emd_convention, seed, progress, dev))
        weights.append(b1 - b0)
    w = np.asarray(weights, dtype=np.float64) / sum(weights)

    def average(key: str) -> dict[str, float] | None:
        if parts[0][key] is None:
            return None
        return {name: float(sum(wi * p[key][name] for wi, p in zip(w, parts))) for name in parts[0][key]}

    squared, levels = EMD_CONVENTIONS[emd_convention]
    protocol = {
        "normalization": normalization,
        "normalization_definition": NORMALIZATION_DEFINITIONS[normalization],
        "cd_definition": CD_DEFINITION,
        "emd": None if emd is None else {
            "method": emd,
            "convention": emd_convention,
            "ground_cost": "squared Euclidean" if squared else "Euclidean",
            "approxmatch_levels": list(levels) if emd == "approx" else None,
            "divided_by": "N",
            "first_argument": "reference (approxmatch xyz1, as PointFlow's M_rs)",
        },
        "num_samples": m,
        "num_references": k,
        "points_per_cloud": int(s.shape[1]) if s.shape[1] == r.shape[1] else [int(s.shape[1]), int(r.shape[1])],
        "batch_size": None if batch_size is None else int(batch_size),
        "num_batches": len(starts),
        "within_set_matrices": ("CD and exact EMD: pairs i < j, mirrored; approx EMD: both orders; "
                                "diagonals excluded from 1-NNA, whose neighbours are read per column as PointFlow's"),
        "seed": seed,
        "tie_breaking": "uniform among exactly equal minima, numpy default_rng(seed)",
        "dtype": "float32 (CD, approx EMD); float64 (exact EMD)",
        "device": str(dev),
        "versions": _versions(),
    }
    return {"CD": average("CD"), "EMD": average("EMD"), "protocol": protocol}
