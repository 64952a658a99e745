"""Video DiT generation, shared by the Lightning module and user-facing code: any task by
its mask (VDT), DDIM on a few steps (default) or ancestral DDPM through all of them, and,
for class-conditional networks, a label per clip with classifier-free guidance."""
from __future__ import annotations

import torch
from torch import Tensor

from dit3d.models.ddpm_generation import guided_model
from dit3d.models.video_dit import VideoDiT
from dit3d.nn import branch_caching, eval_mode
from dit3d.objectives import GaussianDiffusion, known_sample_loop


def check_given(model: VideoDiT, given: Tensor | None, num_samples: int) -> Tensor:
    """``(num_samples, T)`` bool token mask from ``None`` (nothing given), one ``(T,)`` mask
    for every clip, or a ``(num_samples, T)`` mask."""
    T = model.tokenizer.num_tokens
    if given is None:
        return torch.zeros(num_samples, T, dtype=torch.bool)
    if given.dtype != torch.bool or given.shape not in ((T,), (num_samples, T)):
        raise ValueError(f"given must be a bool token mask of shape ({T},) or ({num_samples}, {T}) (True = given "
                         f"clean; see dit3d.models.video_masks), got {given.dtype} {tuple(given.shape)}")
    return given.expand(num_samples, T).cpu()


@torch.no_grad()
def sample_videos(model: VideoDiT, diffusion: GaussianDiffusion, num_samples: int, context: Tensor | None = None,
                  given: Tensor | None = None, sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
                  clip_denoised: float | None = 1.0, generator: torch.Generator | None = None,
                  progress: bool = False, label: int | Tensor | None = None, guidance: float = 1.0,
                  cache_interval: int = 1, guide: VideoDiT | None = None, autoguidance_scale: float = 1.0) -> Tensor:
    r"""Generate clips, or the missing tokens of ``context`` clips, with a trained :class:`VideoDiT`.

    The given tokens of ``context`` are handed to the network clean at every step and
    copied into the output unchanged (:func:`~dit3d.objectives.known_sample_loop`); the
    rest is drawn from noise. A class-conditional network may be given a label per clip
    and guided towards it (:func:`guided_model`); the given tokens still come back
    exactly as they were. Runs in eval mode and restores the mode.

    Args:
        model: the noise predictor.
        diffusion: the schedule it was trained with.
        num_samples: clips ``B``.
        context: clean clips ``(B, C, F, H, W)`` whose given tokens condition the samples
            (the pixels of generated tokens are ignored); ``None`` only when nothing is given.
        given: token mask, ``(T,)`` for every clip or ``(B, T)``; ``None``: unconditional.
            Build one per task with :func:`dit3d.models.video_masks.task_mask`.
        sampler: ``"ddim"`` (``steps`` evaluations, default 50) or ``"ddpm"`` (all ``T``).
        steps: DDIM steps.
        eta: DDIM stochasticity (0: deterministic given the noise).
        clip_denoised: clamp each step's :math:`\hat x_0` to ``[-c, c]`` (1.0 for data in
            ``[-1, 1]``, as :mod:`dit3d.data.moving_digits`); ``None`` does not clamp.
        generator: random generator for the initial noise and every step.
        progress: show a progress bar.
        label: class of every clip or ``(B,)`` one per clip (conditional networks only);
            ``None``: the null class, i.e. unconditional in class labels.
        guidance: classifier-free guidance weight :math:`w` (1: none); needs a conditional
            network and a label.
        cache_interval: reuse the blocks' attention and MLP outputs between full steps
            every ``cache_interval`` steps (FORA, :mod:`dit3d.nn.step_cache`); 1: no reuse.
        guide, autoguidance_scale: a weaker network of the same clips (the same run at an
            earlier step) and the autoguidance weight (:func:`guided_model`; 1: off).

    Shapes:
        -> ``(num_samples, C, F, H, W)``, equal to ``context`` on the given tokens
    """
    if num_samples < 1:
        raise ValueError(f"need num_samples >= 1, got {num_samples}")
    device = next(model.parameters()).device
    shape = (num_samples, *model.video_shape)
    mask = check_given(model, given, num_samples).to(device)  # (B, T)
    if context is None:
        if mask.any():
            raise ValueError("given tokens need the context clips they come from: pass context=(B, C, F, H, W)")
        context = torch.zeros(shape, device=device)
    elif tuple(context.shape) != shape:
        raise ValueError(f"context must have shape {shape} (num_samples, C, F, H, W), got {tuple(context.shape)}")
    context = context.to(device=device, dtype=torch.get_default_dtype())
    known = model.tokenizer.tokens_to_video(mask)  # (B, 1, F, H, W)
    model_fn = guided_model(model, num_samples, label, float(guidance), guide, float(autoguidance_scale))
    with eval_mode(model, guide), branch_caching(model, cache_interval):
        return known_sample_loop(diffusion, model_fn, context, known, sampler, steps, eta, clip_denoised,
                                 generator, progress=progress, given=mask)
