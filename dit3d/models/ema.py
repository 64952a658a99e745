r"""Exponential moving average (EMA) of network weights, shared by the Lightning systems.

After optimiser step :math:`n` the averaged weights move towards the current ones,

.. math::
    \bar\theta \leftarrow d_n\, \bar\theta + (1 - d_n)\, \theta, \qquad
    d_n = \min\!\Big(d,\ \frac{1 + n}{10 + n}\Big),

with the warm-up of :math:`d_n` (TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``) so that the average forgets the random initialisation quickly instead
of dragging it along for ~:math:`1/(1-d)` steps. Only parameters are averaged; buffers
(fixed positional tables, data statistics) are left as they are.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_copy", "ema_decay", "update_ema_"]


def ema_copy(model: nn.Module, decay: float) -> nn.Module | None:
    """A frozen deep copy of ``model`` to hold its average, or ``None`` when ``decay <= 0``
    (no averaging: sampling then uses the raw weights)."""
    return copy.deepcopy(model).requires_grad_(False) if decay > 0 else None


def ema_decay(step: int, max_decay: float) -> float:
    r"""Warmed-up decay :math:`d_n = \min(d, (1 + n) / (10 + n))` after step ``n``.

    Example:
        >>> ema_decay(0, 0.999), ema_decay(10**6, 0.999)
        (0.1, 0.999)
    """
    return min(max_decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema_(ema: nn.Module | None, model: nn.Module, step: int, max_decay: float) -> float | None:
    r"""In place :math:`\bar\theta \leftarrow d_n \bar\theta + (1 - d_n)\theta` for every
    parameter of ``ema`` and the matching one of ``model`` (same architecture).

    Args:
        ema: the averaged copy (from :func:`ema_copy`); ``None`` does nothing.
        model: the network being trained.
        step: optimiser steps taken so far ``n`` (e.g. ``trainer.global_step``).
        max_decay: :math:`d`.

    Returns:
        the decay used, or ``None`` when ``ema`` is ``None``.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> avg = ema_copy(net, 0.9)
        >>> _ = net.weight.data.add_(1.0)
        >>> update_ema_(avg, net, step=0, max_decay=0.9)  # warm-up: d_0 = 0.1
        0.1
        >>> torch.allclose(avg.weight, net.weight - 0.1)
        True
    """
    if ema is None:
        return None
    decay = ema_decay(step, max_decay)
    ema_params, params = list(ema.parameters()), list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError(f"EMA copy has {len(ema_params)} parameters, the model {len(params)}; "
                         "make the EMA with ema_copy(model, decay) after building the model")
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    return decay
