r"""Conditioning a :class:`~dit3d.objectives.GaussianDiffusion` on known entries, given clean.

VDT's unified spatial-temporal mask modelling (Lu et al. 2023) in data-agnostic form: a
bool mask :math:`m` (``True`` = known) marks the entries of :math:`x_0` that are given;
the others are generated. At every step the network sees the noisy state with the known
entries replaced by their clean values,

.. math::
    \tilde x_t = m \odot x_0 + (1 - m) \odot x_t,

and is told which entries are known through its own inputs (``model_kwargs``; for video,
a per-token flag). Training regresses the target only where :math:`m = 0`:

.. math::
    L = \frac{\sum (1 - m) \odot (f_\theta(\tilde x_t, t) - y)^2}{\sum (1 - m)},

with :math:`y` the diffusion's :meth:`~dit3d.objectives.GaussianDiffusion.training_target`.
Sampling runs the ordinary DDPM or DDIM loop on :math:`\tilde x_t` and returns
:math:`m \odot x_0 + (1 - m) \odot \hat x_0`, so known entries come back exactly as given.
The update of every generated entry depends on the model output and on that entry
alone, so replacing the known entries of the sampler's state at each step, or only in
what the network sees (as here), gives the same samples. With :math:`m = 0` everywhere
this is plain unconditional DDPM; what a mask means (future frames, in-between frames,
a region) is the caller's choice, which is how one network serves every task.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._utils import ModelFn, check_finite, randint, randn
from .ddpm import GaussianDiffusion

__all__ = ["known_sample_loop", "known_training_loss", "replace_known"]

SAMPLERS = ("ddpm", "ddim")


def _check_known(known: Tensor, x0: Tensor) -> Tensor:
    if not isinstance(known, Tensor) or known.dtype != torch.bool:
        raise ValueError(f"known must be a bool tensor (True = given entry), got "
                         f"{known.dtype if isinstance(known, Tensor) else type(known).__name__}")
    try:
        torch.broadcast_shapes(known.shape, x0.shape)
    except RuntimeError:
        raise ValueError(f"known mask of shape {tuple(known.shape)} does not broadcast against the data "
                         f"{tuple(x0.shape)}; give one flag per entry (size-1 axes broadcast)") from None
    if known.dim() != x0.dim():
        raise ValueError(f"known mask must have as many axes as the data ({x0.dim()}), got {tuple(known.shape)}")
    return known.to(x0.device)


def replace_known(x: Tensor, x0: Tensor, known: Tensor) -> Tensor:
    r""":math:`m \odot x_0 + (1 - m) \odot x`, by :func:`torch.where` (exact, no arithmetic).

    Shapes:
        x, x0: ``(B, ...)``; known: bool, broadcastable to ``x`` -> ``x``'s shape
    """
    return torch.where(known, x0, x)


def known_training_loss(diffusion: GaussianDiffusion, model_fn: ModelFn, x0: Tensor, known: Tensor,
                        generator: torch.Generator | None = None, t: Tensor | None = None,
                        min_snr_gamma: float | None = None, **model_kwargs: Any) -> Tensor:
    r"""DDPM loss on the generated entries, with the known ones given clean (see the module doc).

    Args:
        diffusion: the noise schedule and parameterisation.
        model_fn: network ``model_fn(x_t, t, **model_kwargs)``; tell it which entries are
            known through ``model_kwargs``.
        x0: clean data.
        known: bool, ``True`` = given entry; broadcastable to ``x0`` (e.g. ``(B, 1, F, H, W)``
            against ``(B, C, F, H, W)``).
        generator: random generator for :math:`t` and the noise.
        t: fixed timesteps instead of uniform ones.
        min_snr_gamma: weight each sample's error by
            :meth:`~dit3d.objectives.GaussianDiffusion.min_snr_weight`; ``None``: unweighted.
        **model_kwargs: extra network inputs.

    Shapes:
        x0: ``(B, ...)``; known: broadcastable to it; t: ``(B,)`` -> scalar. A batch in which
        every entry is known has nothing to learn and gives 0 (with a gradient of 0).

    Example:
        >>> x0, known = torch.randn(2, 4), torch.tensor([[True, True, False, False]] * 2)
        >>> model = lambda x_t, t: x_t  # sees the clean entries where known
        >>> loss = known_training_loss(GaussianDiffusion(10), model, x0, known)
        >>> loss.shape
        torch.Size([])
    """
    known = _check_known(known, x0)
    check_finite(x0, "x0")
    if t is None:
        t = randint(diffusion.num_timesteps, (x0.shape[0],), generator, x0.device)
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    x_t = replace_known(diffusion.q_sample(x0, t, noise), x0, known)
    out = model_fn(x_t, t, **model_kwargs)
    if not isinstance(out, Tensor) or out.shape != x0.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model_fn must return a tensor of x_t's shape {tuple(x0.shape)}, got {shape}")
    generated = (~known).expand_as(out).to(out.dtype)
    err = (out - diffusion.training_target(x0, noise, t)) ** 2
    err = err * diffusion.loss_weight(t, err, min_snr_gamma)
    return (err * generated).sum() / generated.sum().clamp(min=1.0)


@torch.no_grad()
def known_sample_loop(diffusion: GaussianDiffusion, model_fn: ModelFn, x0: Tensor, known: Tensor,
                      sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
                      clip_denoised: float | None = None, generator: torch.Generator | None = None,
                      noise: Tensor | None = None, progress: bool = False, **model_kwargs: Any) -> Tensor:
    r"""Generate the unknown entries of ``x0`` given the known ones (see the module doc).

    Args:
        diffusion: the schedule the network was trained with.
        model_fn: network ``model_fn(x_t, t, **model_kwargs)``.
        x0: data whose known entries condition the samples; the values of unknown entries
            are never read (zeros will do).
        known: bool, ``True`` = given; broadcastable to ``x0``. All ``False`` draws
            unconditional samples.
        sampler: ``"ddim"`` (``steps`` evaluations, default 50; Song et al. 2021) or
            ``"ddpm"`` (ancestral, all ``T`` steps).
        steps: DDIM steps; ``"ddpm"`` accepts only ``None`` or ``T``.
        eta: DDIM stochasticity.
        clip_denoised: clamp each step's :math:`\hat x_0` to ``[-c, c]``, or ``None``.
        generator: random generator for the initial noise and every step.
        noise: initial noise instead of a fresh draw.
        progress: show a progress bar.
        **model_kwargs: extra network inputs (e.g. which tokens are known).

    Shapes:
        x0: ``(B, ...)``; known: broadcastable to it -> ``(B, ...)``, equal to ``x0`` (bit for
        bit) wherever ``known``.
    """
    known = _check_known(known, x0)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if sampler == "ddpm" and steps not in (None, diffusion.num_timesteps):
        raise ValueError(f"ancestral DDPM runs all {diffusion.num_timesteps} steps, got steps={steps}; "
                         "use sampler='ddim' for fewer")
    check_finite(x0, "x0")

    def given_clean(x_t: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        return model_fn(replace_known(x_t, x0, known), t, **kwargs)

    common = dict(generator=generator, noise=noise, progress=progress, clip_denoised=clip_denoised,
                  device=x0.device, **model_kwargs)
    if sampler == "ddpm":
        out = diffusion.p_sample_loop(given_clean, tuple(x0.shape), **common)
    else:
        out = diffusion.ddim_sample_loop(given_clean, tuple(x0.shape), steps=50 if steps is None else steps,
                                         eta=eta, **common)
    return replace_known(out, x0, known)
