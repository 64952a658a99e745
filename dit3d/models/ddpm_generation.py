"""Class-conditional DDPM generation shared by the DDPM-trained systems (DiT-3D, image
DiT): DDIM on a few steps (default) or ancestral DDPM through all of them, with
classifier-free guidance, in eval mode."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from dit3d.nn import branch_caching, eval_mode
from dit3d.objectives import GaussianDiffusion, guidance_sum

SAMPLERS = ("ddpm", "ddim")


def sample_labels(label: int | Tensor, num_samples: int, num_classes: int, device: torch.device,
                  what: str = "labels") -> Tensor:
    """``(num_samples,)`` long labels from one int or a per-sample tensor, checked against
    ``0..num_classes-1``; ``what`` names them in errors (e.g. ``"digits"``)."""
    if isinstance(label, Tensor):
        if label.shape != (num_samples,):
            raise ValueError(f"label must be an int or a ({num_samples},) tensor, got shape {tuple(label.shape)}")
        y = label.to(device=device, dtype=torch.long)
    else:
        y = torch.full((num_samples,), int(label), dtype=torch.long, device=device)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{what} must lie in 0..{num_classes - 1} for this model, got "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y


def guided_model(model: nn.Module, num_samples: int, label: int | Tensor | None = None,
                 guidance: float = 1.0, guide: nn.Module | None = None,
                 autoguidance_scale: float = 1.0) -> Callable[..., Tensor]:
    r"""The noise predictor the samplers call: ``model`` itself, or, with a label, the
    classifier-free guided :math:`\hat\epsilon_\varnothing + w (\hat\epsilon_y - \hat\epsilon_\varnothing)`
    (:func:`~dit3d.objectives.classifier_free_guidance`, both halves in one doubled batch),
    or, with a ``guide`` network (a weaker version of ``model``: the same run at an earlier
    step), the autoguided :math:`\hat\epsilon_g + a (\hat\epsilon - \hat\epsilon_g)`
    (:func:`~dit3d.objectives.autoguidance`; both get the same label), or both at once
    (:func:`~dit3d.objectives.guidance_sum`: both directions added to :math:`\hat\epsilon_y`).

    Args:
        model: the network ``model(x, t, y)``; ``model.null_class`` is ``None`` when it is
            unconditional.
        num_samples: samples ``B``.
        label: class of every sample (int) or one per sample ``(B,)``, in
            ``0..num_classes-1``; ``None``: the null class (unconditional samples). Only for
            conditional networks.
        guidance: guidance weight :math:`w` (1: the conditional network as it is). Needs a
            conditional network and a label.
        guide: the weaker network for autoguidance (eval mode), or ``None``.
        autoguidance_scale: autoguidance weight :math:`a` (1: off); needs ``guide``.

    Raises:
        ValueError: a label or guidance for an unconditional network, guidance without a
            label, labels of the wrong shape or out of range, autoguidance without a guide.
    """
    null = model.null_class
    if null is None:
        if label is not None:
            raise ValueError("label given to an unconditional model (num_classes=0): it draws samples of any "
                             "class; leave label=None, or train a class-conditional one (num_classes >= 1)")
        if guidance != 1.0:
            raise ValueError(f"classifier-free guidance needs a class-conditional model (num_classes >= 1), "
                             f"this one has no class labels; leave guidance at 1, got {guidance}")
    elif label is None and guidance != 1.0:
        raise ValueError(f"guidance {guidance} needs a label to guide towards: pass label (a class, or one "
                         "per sample), or leave guidance at 1 for unconditional (null-class) samples")
    if null is None or label is None:  # y=None: any class (the null class of a conditional model)
        return model if autoguidance_scale == 1 else guidance_sum(model, guide, 1.0, autoguidance_scale, {}, {})
    y = sample_labels(label, num_samples, null, next(model.parameters()).device)  # (B,)
    return guidance_sum(model, guide, guidance, autoguidance_scale, {"y": y}, {"y": torch.full_like(y, null)})


@torch.no_grad()
def sample_conditional(model: nn.Module, diffusion: GaussianDiffusion, shape: Sequence[int], label: int | Tensor = 0,
                       sampler: str = "ddim", steps: int | None = None, eta: float = 0.0, guidance: float = 1.0,
                       clip_denoised: float | None = None, generator: torch.Generator | None = None,
                       progress: bool = False, cache_interval: int = 1, guide: nn.Module | None = None,
                       autoguidance_scale: float = 1.0) -> Tensor:
    r"""Draw ``shape`` from noise with a noise predictor ``model(x, t, y)`` that has a
    ``null_class`` attribute (``None``: unconditional).

    Args:
        model: the noise predictor (put in eval mode while sampling).
        diffusion: the schedule it was trained with.
        shape: ``(B, ...)`` of the samples.
        label: class of every sample, or one per sample; ignored by unconditional models.
        sampler: ``"ddpm"`` (ancestral, all ``T`` steps, fixed-small variance, Ho et al.
            2020) or ``"ddim"`` (Song et al. 2021, ``steps`` evaluations, default 50).
        steps: DDIM steps; for ``"ddpm"`` only ``None`` or ``T`` are accepted.
        eta: DDIM stochasticity (0 deterministic).
        guidance: classifier-free guidance weight :math:`w` (1: the conditional model).
        clip_denoised: clamp the predicted :math:`x_0` to ``[-c, c]`` (images), or ``None``.
        generator: random generator for the initial noise and every step.
        progress: show a progress bar.
        cache_interval: compute the blocks' attention and MLP in full every
            ``cache_interval``-th step and reuse them in between (FORA,
            :mod:`dit3d.nn.step_cache`); 1 computes every step in full.
        guide, autoguidance_scale: a weaker network and the autoguidance weight
            (:func:`guided_model`; 1: off).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if sampler == "ddpm" and steps not in (None, diffusion.num_timesteps):
        raise ValueError(f"ancestral DDPM runs all {diffusion.num_timesteps} steps, got steps={steps}; "
                         "use sampler='ddim' for fewer")
    device = next(model.parameters()).device
    model_fn = guided_model(model, shape[0], None if model.null_class is None else label, guidance, guide,
                            autoguidance_scale)
    with eval_mode(model, guide), branch_caching(model, cache_interval):
        if sampler == "ddpm":
            return diffusion.p_sample_loop(model_fn, tuple(shape), generator=generator, progress=progress,
                                           clip_denoised=clip_denoised, device=device)
        return diffusion.ddim_sample_loop(model_fn, tuple(shape), steps=50 if steps is None else steps, eta=eta,
                                          generator=generator, progress=progress, clip_denoised=clip_denoised,
                                          device=device)

