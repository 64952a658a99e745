r"""Noise-data couplings for flow matching on sets of tokens.

Conditional flow matching trains on pairs :math:`(x_0, x_1)` drawn from a coupling
:math:`q(x_0, x_1)` whose marginals are the noise :math:`\mathcal{N}(0, I)` and the data;
any such coupling gives a velocity field that transports one to the other (Tong et al.,
2024, "Improving and generalizing flow-based generative models with minibatch optimal
transport", Sec. 3). The independent coupling pairs each data set with noise tokens in an
arbitrary order, so a token's straight path may cross the whole cloud and paths of
different samples cross each other; the regression target then varies a lot at a given
:math:`x_t`, which slows learning.

For data that is a *set* of tokens (the order means nothing, as for atoms), permuting the
i.i.d. noise tokens of one sample leaves the noise law unchanged, so choosing for each
sample the permutation :math:`\pi` that minimises the transport cost

.. math::
    \pi^\star = \arg\min_{\pi} \sum_i \lVert x_1^{(i)} - x_0^{(\pi(i))} \rVert^2

is still a valid coupling, with shorter, less crossing paths. This is the permutation part
of equivariant optimal-transport flow matching (Klein, Krämer & Noé, 2023, "Equivariant
flow matching", Sec. 4; Song et al., 2023, "Equivariant Flow Matching with Hybrid
Probability Transport"); the assignment is solved exactly with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`). Sampling is unchanged: it still starts
from i.i.d. noise.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ._utils import check_finite
from .masking import validate_mask

__all__ = ["COUPLINGS", "permutation_coupling"]

COUPLINGS = ("independent", "permutation")


@torch.no_grad()
def permutation_coupling(x0: Tensor, x1: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Reorder each sample's noise tokens to the optimal assignment onto its data tokens.

    Only real tokens (``mask`` True) take part: sample ``b``'s real noise tokens are
    permuted among its real positions, padding stays where it is. The cost is the squared
    Euclidean distance between a data token and a noise token, over all feature axes.

    Args:
        x0: noise, i.i.d. over tokens.
        x1: data.
        mask: bool padding mask ``(B, N)``, ``True`` = real token; ``None`` = all real.

    Shapes:
        - **x0, x1, output:** :math:`(B, N, \dots)`; **mask:** :math:`(B, N)`.

    Example:
        >>> import torch
        >>> x1 = torch.tensor([[[0.0], [10.0]]])
        >>> x0 = torch.tensor([[[9.0], [1.0]]])
        >>> permutation_coupling(x0, x1)[0, :, 0]
        tensor([1., 9.])
    """
    if x0.shape != x1.shape or x1.dim() < 2:
        raise ValueError(f"x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)} must share one shape "
                         "(B, N, ...) with a token axis N")
    mask = validate_mask(mask, x1)
    if mask is not None and mask.dim() != 2:
        raise ValueError(f"permutation coupling needs a per-token mask (B, N), got {tuple(mask.shape)}")
    check_finite(x0, "x0")
    check_finite(x1, "x1")
    flat0, flat1 = x0.flatten(2), x1.flatten(2)  # (B, N, F)
    cost = torch.cdist(flat1.double(), flat0.double()).square().cpu().numpy()  # (B, N, N)
    B, N = x1.shape[:2]
    real_mask = np.ones((B, N), dtype=bool) if mask is None else mask.cpu().numpy()
    index = np.tile(np.arange(N), (B, 1))  # (B, N) source token of each position
    for b in range(B):
        real = np.flatnonzero(real_mask[b])
        if len(real) > 1:
            _, cols = linear_sum_assignment(cost[b][np.ix_(real, real)])
            index[b, real] = real[cols]
    index_t = torch.as_tensor(index, device=x0.device)
    return torch.gather(flat0, 1, index_t[..., None].expand_as(flat0)).reshape(x0.shape)
