r"""Guidance as model wrappers: classifier-free guidance (Ho & Salimans, 2022) and
autoguidance (Karras et al., 2024).

The guided prediction extrapolates from the unconditional towards the conditional one,

.. math::
    \hat f_w(x, t) = \hat f(x, t \mid \varnothing)
        + w\,\big[\hat f(x, t \mid c) - \hat f(x, t \mid \varnothing)\big],

so :math:`w = 1` is the plain conditional model, :math:`w = 0` the unconditional one,
and :math:`w > 1` trades diversity for fidelity to :math:`c`. Because the combination is
linear, it applies equally to :math:`\epsilon`, :math:`v`, :math:`x_0` and flow velocities.

Autoguidance extrapolates instead from a weaker model of the same data, one trained for
less time or with less capacity, towards the model itself, with the same condition:

.. math::
    \hat f_w(x, t) = \hat g(x, t \mid c) + w\,\big[\hat f(x, t \mid c) - \hat g(x, t \mid c)\big].

Both models err where the data is hard to fit, the weak one more, so the difference points
from their shared errors towards the data; unlike classifier-free guidance it needs no
unconditional model and does not push samples towards a class's typical members.

The two combine by adding both directions to the conditional prediction
(:func:`guidance_sum`):

.. math::
    \hat f_{w,a} = \hat f(\cdot \mid c) + (w - 1)\,[\hat f(\cdot \mid c) - \hat f(\cdot \mid \varnothing)]
        + (a - 1)\,[\hat f(\cdot \mid c) - \hat g(\cdot \mid c)],

which is classifier-free guidance at :math:`a = 1` and autoguidance at :math:`w = 1`.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from ._utils import ModelFn

__all__ = ["autoguidance", "classifier_free_guidance", "guidance_sum"]


def _check_batched(value: Tensor, batch_size: int, name: str) -> None:
    if value.dim() == 0 or value.shape[0] != batch_size:
        raise ValueError(f"tensor kwarg {name!r} of shape {tuple(value.shape)} must have batch size "
                         f"{batch_size} on dim 0, like x, to be split between the two guidance halves")


def _merge_kwargs(cond: Mapping[str, Any], uncond: Mapping[str, Any], other: Mapping[str, Any],
                  batch_size: int) -> dict[str, Any]:
    """Stack cond over uncond for every tensor kwarg; shared kwargs are duplicated."""
    merged: dict[str, Any] = {}
    for name, c in cond.items():
        u = uncond[name]
        if isinstance(c, Tensor) != isinstance(u, Tensor):
            raise ValueError(f"kwarg {name!r} is a tensor in one of cond_kwargs/uncond_kwargs but not the other")
        if isinstance(c, Tensor):
            _check_batched(c, batch_size, name)
            _check_batched(u, batch_size, name)
            merged[name] = torch.cat([c, u.to(device=c.device, dtype=c.dtype)])
        elif c != u:
            raise ValueError(f"non-tensor kwarg {name!r} differs between cond ({c!r}) and uncond ({u!r}); "
                             "one batched call needs it equal, or make it a per-sample tensor")
        else:
            merged[name] = c
    for name, value in other.items():
        if isinstance(value, Tensor):
            _check_batched(value, batch_size, name)
            value = torch.cat([value, value])
        merged[name] = value
    return merged


def _checked_kwargs(cond_kwargs: Mapping[str, Any], uncond_kwargs: Mapping[str, Any]) -> None:
    if set(cond_kwargs) != set(uncond_kwargs):
        raise ValueError(f"cond_kwargs keys {sorted(cond_kwargs)} and uncond_kwargs keys "
                         f"{sorted(uncond_kwargs)} must be the same")


def _checked_other(other_kwargs: Mapping[str, Any], cond_kwargs: Mapping[str, Any]) -> None:
    clash = set(other_kwargs) & set(cond_kwargs)
    if clash:
        raise ValueError(f"kwargs {sorted(clash)} are given both to the guided call and in cond_kwargs")


def _both_halves(model_fn: ModelFn, x: Tensor, t: Tensor, cond_kwargs: Mapping[str, Any],
                 uncond_kwargs: Mapping[str, Any], other_kwargs: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """The conditional and unconditional predictions from one call on the doubled batch."""
    batch_size = x.shape[0]
    _check_batched(t, batch_size, "t")
    kwargs = _merge_kwargs(cond_kwargs, uncond_kwargs, other_kwargs, batch_size)
    out_cond, out_uncond = model_fn(torch.cat([x, x]), torch.cat([t, t]), **kwargs).chunk(2)
    return out_cond, out_uncond


def _interval_mask(t: Tensor, interval: tuple[float, float] | None) -> Tensor | None:
    """``(B,)`` bool: the times inside ``interval`` (``None``: no interval, guide everywhere)."""
    return None if interval is None else (t >= interval[0]) & (t <= interval[1])


def _check_interval(interval: tuple[float, float] | None) -> None:
    if interval is not None and not (len(interval) == 2 and interval[0] <= interval[1]):
        raise ValueError(f"interval must be (lo, hi) with lo <= hi, got {interval!r}")


def _where_inside(inside: Tensor | None, guided: Tensor, plain: Tensor) -> Tensor:
    """``guided`` at the samples whose time is inside the interval, ``plain`` elsewhere."""
    if inside is None or bool(inside.all()):
        return guided
    return torch.where(inside.reshape(-1, *([1] * (plain.dim() - 1))), guided, plain)  # (B, ...)


def classifier_free_guidance(model_fn: ModelFn, scale: float, cond_kwargs: Mapping[str, Any],
                             uncond_kwargs: Mapping[str, Any]) -> ModelFn:
    r"""Wrap ``model_fn`` into a guided model ``f(x, t, **other_kwargs)`` for the samplers.

    Both halves run in ONE network call on a doubled batch: ``x``, ``t``, each tensor in
    ``cond_kwargs``/``uncond_kwargs`` (conditional first) and each tensor passed to the
    wrapped function at call time (such as ``mask`` or ``self_cond`` from a sampler,
    duplicated) are concatenated along dim 0. Non-tensor kwargs are passed through
    and must be equal in ``cond_kwargs`` and ``uncond_kwargs``. With ``scale == 1`` the
    model runs once, on the conditional inputs only.

    Args:
        model_fn: network ``model_fn(x, t, **kwargs)``.
        scale: guidance weight :math:`w`.
        cond_kwargs: kwargs of the conditional call, e.g. ``{"y": labels}``.
        uncond_kwargs: kwargs of the unconditional call, e.g. ``{"y": null_labels}``;
            must have the same keys.

    Shapes:
        - **x:** :math:`(B, \dots)`; **t:** :math:`(B,)`; tensor kwargs :math:`(B, \dots)`
        - **output:** same as ``x``.

    Example:
        >>> import torch
        >>> model = lambda x, t, y: x + y[:, None]
        >>> guided = classifier_free_guidance(model, 3.0, {"y": torch.ones(2)}, {"y": torch.zeros(2)})
        >>> guided(torch.zeros(2, 4), torch.zeros(2)).tolist()
        [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]
    """
    return guidance_sum(model_fn, None, scale, 1.0, cond_kwargs, uncond_kwargs)


def autoguidance(model_fn: ModelFn, guide_fn: ModelFn, scale: float,
                 interval: tuple[float, float] | None = None) -> ModelFn:
    r"""Wrap ``model_fn`` and a weaker ``guide_fn`` into an autoguided model ``f(x, t, **kwargs)``
    (Karras et al., "Guiding a Diffusion Model with a Bad Version of Itself", NeurIPS 2024):
    :math:`g + w (f - g)`.

    Both networks get the same arguments, so they must predict the same quantity of the
    same data space (e.g. a latent DiT at an earlier training step). With ``scale == 1``
    only ``model_fn`` runs. With ``interval = (lo, hi)`` the guide runs only for times
    ``lo <= t <= hi`` and the model alone elsewhere (guidance in a limited interval,
    Kynkaanniemi et al., NeurIPS 2024): cheaper, and the ends of the path may need no
    guidance. ``t`` is compared in the units the networks take; a batch whose times all lie
    outside skips the guide call.

    Args:
        model_fn: the network ``model_fn(x, t, **kwargs)``.
        guide_fn: the weaker network, called the same way.
        scale: guidance weight :math:`w` (1: the model alone; 0: the guide alone).
        interval: ``(lo, hi)`` times at which to guide (``None``: all).

    Shapes:
        - **x:** :math:`(B, \dots)`; **t:** :math:`(B,)`
        - **output:** same as ``x``.

    Example:
        >>> import torch
        >>> guided = autoguidance(lambda x, t: x + 1, lambda x, t: x, 2.0, interval=(0.5, 1.0))
        >>> guided(torch.zeros(2, 3), torch.tensor([0.2, 0.7])).tolist()
        [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    """
    return guidance_sum(model_fn, guide_fn, 1.0, scale, {}, {}, interval)


def guidance_sum(model_fn: ModelFn, guide_fn: ModelFn | None, scale: float, autoguidance_scale: float,
                 cond_kwargs: Mapping[str, Any], uncond_kwargs: Mapping[str, Any],
                 interval: tuple[float, float] | None = None) -> ModelFn:
    r"""Classifier-free guidance and autoguidance at once: both directions added to the
    conditional prediction,
    :math:`f_c + (w - 1)(f_c - f_\varnothing) + (a - 1)(f_c - g_c)`,
    with :math:`f_c, f_\varnothing` the model with ``cond_kwargs`` / ``uncond_kwargs`` (one
    call on the doubled batch, as :func:`classifier_free_guidance`) and :math:`g_c` the
    weaker ``guide_fn`` with ``cond_kwargs``. Class fidelity comes from the first term, the
    quality of what is drawn from the second: a conditional model needs both to draw the
    class it is asked for *well*. At :math:`a = 1` (or outside ``interval``) it is
    :func:`classifier_free_guidance` and the guide does not run; at :math:`w = 1` it is
    :func:`autoguidance` with the conditional arguments.

    Args:
        model_fn: the network ``model_fn(x, t, **kwargs)``.
        guide_fn: the weaker network, called like ``model_fn``; only needed for
            ``autoguidance_scale != 1``.
        scale: classifier-free guidance weight :math:`w`.
        autoguidance_scale: autoguidance weight :math:`a`.
        cond_kwargs, uncond_kwargs: as for :func:`classifier_free_guidance`.
        interval: ``(lo, hi)`` times at which the autoguidance term applies (``None``: all).

    Shapes:
        - **x:** :math:`(B, \dots)`; **t:** :math:`(B,)`; tensor kwargs :math:`(B, \dots)`
        - **output:** same as ``x``.

    Example:
        >>> import torch
        >>> model = lambda x, t, y: x + 2 * y[:, None]
        >>> guided = guidance_sum(model, lambda x, t, y: x + y[:, None], 3.0, 2.0,
        ...                       {"y": torch.ones(1)}, {"y": torch.zeros(1)})
        >>> guided(torch.zeros(1, 2), torch.zeros(1)).tolist()  # 2 + 2 * (2 - 0) + 1 * (2 - 1)
        [[7.0, 7.0]]
    """
    _checked_kwargs(cond_kwargs, uncond_kwargs)
    _check_interval(interval)
    if autoguidance_scale != 1 and guide_fn is None:
        raise ValueError(f"autoguidance {autoguidance_scale} needs a guide network (guide_fn=None); pass the weaker "
                         "network, or autoguidance_scale=1")
    cond_kwargs, uncond_kwargs = dict(cond_kwargs), dict(uncond_kwargs)

    def guided(x: Tensor, t: Tensor, **other_kwargs: Any) -> Tensor:
        _checked_other(other_kwargs, cond_kwargs)
        if scale == 1:
            out_cond = out = model_fn(x, t, **cond_kwargs, **other_kwargs)
        else:
            out_cond, out_uncond = _both_halves(model_fn, x, t, cond_kwargs, uncond_kwargs, other_kwargs)
            out = out_uncond + scale * (out_cond - out_uncond)  # as classifier_free_guidance, to the bit
        if autoguidance_scale == 1:
            return out
        inside = _interval_mask(t, interval)  # (B,)
        if inside is not None and not bool(inside.any()):
            return out
        weak = guide_fn(x, t, **cond_kwargs, **other_kwargs)
        if scale == 1:  # as autoguidance, to the bit
            return _where_inside(inside, weak + autoguidance_scale * (out - weak), out)
        return _where_inside(inside, out + (autoguidance_scale - 1) * (out_cond - weak), out)

    return guided
