r"""Padding masks shared by every objective.

A mask is a bool tensor whose shape is a prefix of the data's shape, e.g. data
:math:`(B, T, C)` with mask :math:`(B, T)`. ``True`` marks a real entry, ``False``
padding. Padding never enters a loss, carries no noise, and is zero in samples, so a
batch of ragged sets behaves like the same sets processed one by one.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["validate_mask", "broadcast_mask", "apply_mask", "masked_mean"]


def validate_mask(mask: Tensor | None, x: Tensor | torch.Size | tuple[int, ...]) -> Tensor | None:
    r"""Check that ``mask`` is a bool tensor whose shape is a prefix of ``x``'s shape.

    Args:
        mask: padding mask, ``True`` = real entry, or ``None`` (everything real).
        x: the data tensor, or just its shape.

    Shapes:
        - **mask:** :math:`(B, T_1, \dots, T_k)` with :math:`k \ge 0` and
          :math:`(B, T_1, \dots, T_k)` a prefix of ``x.shape``.
        - **output:** ``mask`` unchanged (moved to ``x``'s device when ``x`` is a tensor).
    """
    if mask is None:
        return None
    shape = tuple(x.shape) if isinstance(x, Tensor) else tuple(x)
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor of dtype bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must have dtype torch.bool (True = real token), got {mask.dtype}; "
            "convert with mask.bool()"
        )
    if mask.dim() == 0 or mask.dim() > len(shape) or tuple(mask.shape) != shape[: mask.dim()]:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match data of shape {shape}: the mask's "
            f"shape must be a prefix of the data's, e.g. {shape[:2]} for per-token padding"
        )
    return mask.to(x.device) if isinstance(x, Tensor) else mask


def broadcast_mask(mask: Tensor, x: Tensor) -> Tensor:
    r"""Append singleton axes so that ``mask`` broadcasts against ``x``.

    Shapes:
        - **mask:** :math:`(B, T)`; **x:** :math:`(B, T, C, \dots)`
        - **output:** :math:`(B, T, 1, \dots)`, bool.
    """
    mask = validate_mask(mask, x)
    return mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))


def apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    r"""Zero the padded entries of ``x``; identity when ``mask`` is ``None``.

    Uses :func:`torch.where` rather than a product so that non-finite values at
    padded positions (e.g. from a network) cannot leak out as ``NaN * 0``.

    Shapes:
        - **x:** :math:`(B, \dots)`; **mask:** prefix of ``x.shape``
        - **output:** same as ``x``.
    """
    if mask is None:
        return x
    return torch.where(broadcast_mask(mask, x), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Mean of ``values`` over the real entries of the whole batch.

    .. math::
        \frac{\sum_{i} m_i\, v_i}{\sum_i m_i},

    where :math:`m` is the mask broadcast to every element. The denominator counts
    real elements (not samples), so a set with more real tokens weighs more, exactly as
    if the un-padded elements were concatenated.

    Args:
        values: per-element values, e.g. squared errors.
        mask: padding mask or ``None`` (plain mean).

    Shapes:
        - **values:** :math:`(B, \dots)`; **mask:** prefix of ``values.shape``
        - **output:** scalar.
    """
    if mask is None:
        return values.mean()
    full = broadcast_mask(mask, values).expand_as(values)
    count = full.sum()
    if count.item() == 0:
        raise ValueError("mask has no True (real) entries, so the masked mean is undefined; "
                         "drop fully padded batches before computing a loss")
    return apply_mask(values, mask).sum() / count.to(values.dtype)
