"""DiT-3D generation, shared by the Lightning module and user-facing generators:
DDPM ancestral sampling through all steps, or DDIM on fewer, with optional guidance."""
from __future__ import annotations

import torch
from torch import Tensor

from dit3d.models.dit3d_net import DiT3D
from dit3d.objectives import GaussianDiffusion, classifier_free_guidance

SAMPLERS = ("ddpm", "ddim")


def _labels(label: int | Tensor, num_samples: int, device: torch.device) -> Tensor:
    if isinstance(label, Tensor):
        if label.shape != (num_samples,):
            raise ValueError(f"label must be an int or a ({num_samples},) tensor, got shape {tuple(label.shape)}")
        return label.to(device=device, dtype=torch.long)
    return torch.full((num_samples,), int(label), dtype=torch.long, device=device)


@torch.no_grad()
def sample_point_clouds(model: DiT3D, diffusion: GaussianDiffusion, num_samples: int, num_points: int = 2048,
                        label: int | Tensor = 0, sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
                        guidance: float = 1.0, generator: torch.Generator | None = None,
                        progress: bool = False) -> Tensor:
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

    Shapes:
        -> ``(num_samples, num_points, 3)``, in the normalisation of the training data
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if sampler == "ddpm" and steps not in (None, diffusion.num_timesteps):
        raise ValueError(f"ancestral DDPM runs all {diffusion.num_timesteps} steps, got steps={steps}; "
                         "use sampler='ddim' for fewer")
    if num_samples < 1 or num_points < 1:
        raise ValueError(f"need num_samples >= 1 and num_points >= 1, got {num_samples} and {num_points}")
    device = next(model.parameters()).device
    if model.null_class is None:
        if guidance != 1.0:
            raise ValueError("classifier-free guidance needs a class-conditional model (num_classes >= 1)")
        model_fn = model
    else:
        y = _labels(label, num_samples, device)  # (B,)
        model_fn = classifier_free_guidance(model, guidance, {"y": y}, {"y": torch.full_like(y, model.null_class)})
    shape = (num_samples, num_points, 3)
    was_training = model.training
    model.eval()
    try:
        if sampler == "ddpm":
            return diffusion.p_sample_loop(model_fn, shape, generator=generator, progress=progress, device=device)
        return diffusion.ddim_sample_loop(model_fn, shape, steps=50 if steps is None else steps, eta=eta,
                                          generator=generator, progress=progress, device=device)
    finally:
        model.train(was_training)
