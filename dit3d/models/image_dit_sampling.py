"""Image DiT generation, shared by the Lightning module and user-facing code: DDIM on a
few steps (default) or ancestral DDPM through all of them, with classifier-free guidance."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dit3d.models.image_dit import ImageDiT
from dit3d.models.ddpm_generation import SAMPLERS, sample_conditional, sample_labels  # noqa: F401 (re-exported)
from dit3d.objectives import GaussianDiffusion


@torch.no_grad()
def sample_images(model: ImageDiT, diffusion: GaussianDiffusion, num_samples: int, label: int | Tensor = 0,
                  sampler: str = "ddim", steps: int | None = None, eta: float = 0.0, guidance: float = 1.0,
                  clip_denoised: float | None = 1.0, generator: torch.Generator | None = None,
                  progress: bool = False, cache_interval: int = 1, guide: nn.Module | None = None,
                  autoguidance_scale: float = 1.0) -> Tensor:
    r"""Draw images from noise with a trained :class:`ImageDiT` (run in eval mode).

    With guidance weight :math:`w` each step uses
    :math:`\hat\epsilon_w = \hat\epsilon(x_t, t, \varnothing) + w\,[\hat\epsilon(x_t, t, y) -
    \hat\epsilon(x_t, t, \varnothing)]` (Ho & Salimans 2022), both halves in one batched call.

    Args:
        model: the noise predictor.
        diffusion: the schedule it was trained with.
        num_samples: images to draw ``B``.
        label: class of every image, or one per image; ignored by unconditional models.
        sampler: ``"ddim"`` (Song et al. 2021, ``steps`` evaluations, default 50) or
            ``"ddpm"`` (ancestral, all ``T`` steps, fixed-small variance, Ho et al. 2020).
        steps: DDIM steps; for ``"ddpm"`` only ``None`` or ``T`` are accepted.
        eta: DDIM stochasticity (0: deterministic given the initial noise).
        guidance: classifier-free guidance weight :math:`w` (1: the conditional model,
            0: the unconditional one).
        clip_denoised: clamp each step's :math:`\hat x_0` to ``[-c, c]`` (1.0 suits data
            scaled to ``[-1, 1]``, as :mod:`dit3d.data.digits`); ``None`` does not clamp.
        generator: random generator for the initial noise and every step; the same seed
            gives the same images.
        progress: show a progress bar.
        cache_interval: reuse the blocks' attention and MLP outputs between full steps
            every ``cache_interval`` steps (FORA, :mod:`dit3d.nn.step_cache`); 1: no reuse.
        guide, autoguidance_scale: a weaker network of the same data and the autoguidance
            weight (:func:`~dit3d.models.ddpm_generation.guided_model`; 1: off).

    Shapes:
        -> ``(num_samples, C, H, W)``, in the data's scaling (``[-1, 1]`` for digits)
    """
    if num_samples < 1:
        raise ValueError(f"need num_samples >= 1, got {num_samples}")
    shape = (num_samples, *model.image_shape)  # (B, C, H, W)
    return sample_conditional(model, diffusion, shape, label, sampler, steps, eta, guidance, clip_denoised,
                              generator, progress, cache_interval,
                              guide=guide, autoguidance_scale=autoguidance_scale)
