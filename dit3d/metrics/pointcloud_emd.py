r"""Earth mover's distance between point clouds: exact (Hungarian) and PointFlow/PVD's ``approxmatch``.

Part of the PointFlow-protocol metrics (overview in :mod:`dit3d.metrics.pointclouds`);
they judge outputs only.

*Earth mover's distance* between clouds of equal size :math:`N`, over bijections
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
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from dit3d.metrics.pointcloud_distances import _as_clouds, _centred_pair, _check_choice, _TILE_FLOATS

__all__ = ["EMD_CONVENTIONS", "EMD_METHODS", "EMDResult", "earth_movers_distance"]

# convention -> (squared ground cost?, approxmatch rounds lambda). See the module docstring.
EMD_CONVENTIONS: dict[str, tuple[bool, tuple[float, ...]]] = {
    "pvd": (True, tuple(-(4.0 ** j) for j in range(7, -2, -1)) + (0.0,)),
    "pointflow": (False, tuple(-(4.0 ** j) for j in range(7, -2, -1))),
}
EMD_METHODS = ("approx", "exact")

# Exponent floor for the approxmatch weights. exp(-60) = 8.7e-27: a weight the CUDA
# kernel flushes to zero (below exp(-87.3)) is off by at most that, which moves the
# transported mass by < N^2 * 8.7e-27 * 1e9 (the largest ratio the 1e-9 guard allows),
# ~4e-11 at N = 2048. Without the floor, torch's exp meets arguments far below -87 in the
# sharp rounds and runs ~17x slower on this CPU.
_EXP_FLOOR = -60.0


class EMDResult(NamedTuple):
    """EMD of one pair (``value`` a float) or of a batch of pairs (``value`` an array ``(B,)``)."""

    value: float | np.ndarray
    method: str
    convention: str




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

