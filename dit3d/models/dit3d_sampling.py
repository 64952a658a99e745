"""DiT-3D generation, shared by the Lightning module and user-facing generators:
DDPM ancestral sampling through all steps, or DDIM on fewer, with optional guidance."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dit3d.models.ddpm_generation import SAMPLERS, sample_conditional  # noqa: F401 (re-exported)
from dit3d.models.dit3d_net import DiT3D
from dit3d.objectives import GaussianDiffusion


@torch.no_grad()
def sample_point_clouds(model: DiT3D, diffusion: GaussianDiffusion, num_samples: int, num_points: int = 2048,
                        label: int | Tensor = 0, sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
                        guidance: float = 1.0, generator: torch.Generator | None = None,
                        progress: bool = False, cache_interval: int = 1, guide: nn.Module | None = None,
                        autoguidance_scale: float = 1.0) -> Tensor:
    r"""Draw point clouds from noise with a trained :class:`DiT3D` (in eval mode).

    Args:
        model: the noise predictor.
        diffusion: the schedule it was trained with.
        num_samples: clouds to draw ``B``.
        num_points: points per cloud ``N``.
        label: category of every cloud, or one per cloud; ignored by unconditional models.
        sampler: ``"ddpm"`` (ancestral, all ``T`` steps, fixed-small variance, Ho et al.
            2020) or ``"ddim"`` (Song et al. 2021, ``steps`` evaluations, default 50).
        steps: DDIM steps; for ``"ddpm"`` only ``None`` or ``T`` are accepted.
        eta: DDIM stochasticity (0 deterministic).
        guidance: classifier-free guidance weight :math:`w` (1: the conditional model).
        generator: random generator for the initial noise and every step.
        progress: show a progress bar.
        cache_interval: reuse the blocks' attention and MLP outputs between full steps
            every ``cache_interval`` steps (FORA, :mod:`dit3d.nn.step_cache`); 1: no reuse.
        guide, autoguidance_scale: a weaker network of the same data and the autoguidance
            weight (:func:`~dit3d.models.ddpm_generation.guided_model`; 1: off).

    Shapes:
        -> ``(num_samples, num_points, 3)``, in the normalisation of the training data
    """
    if num_samples < 1 or num_points < 1:
        raise ValueError(f"need num_samples >= 1 and num_points >= 1, got {num_samples} and {num_points}")
    return sample_conditional(model, diffusion, (num_samples, num_points, 3), label, sampler, steps, eta, guidance,
                              None, generator, progress, cache_interval,
                              guide=guide, autoguidance_scale=autoguidance_scale)
