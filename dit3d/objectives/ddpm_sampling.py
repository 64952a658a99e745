r"""Sampling loops of :class:`~dit3d.objectives.GaussianDiffusion`: ancestral DDPM and DDIM.

Kept apart from the forward process and the loss so each file stays short; the mixin is
only meant to be inherited by :class:`~dit3d.objectives.GaussianDiffusion`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from dit3d.checks import positive_int

from ._utils import ModelFn, check_finite, progress_bar, randn, sample_device
from .masking import apply_mask, validate_mask

__all__ = ["DDPMSamplingMixin"]


class DDPMSamplingMixin:
    """Samplers for a discrete Gaussian diffusion; the host class supplies the schedule.

    The host must define ``num_timesteps``, ``alphas_cumprod`` (float64, :math:`(T,)`),
    ``p_mean_variance`` and ``_denoise`` (model output to :math:`(\\hat x_0, \\hat\\epsilon)`).
    """

    num_timesteps: int
    alphas_cumprod: Tensor

    def _init_noise(self, shape: Sequence[int], noise: Tensor | None, mask: Tensor | None,
                    generator: torch.Generator | None, device: torch.device | str | None) -> Tensor:
        shape = tuple(shape)
        validate_mask(mask, shape)
        if noise is None:
            noise = randn(shape, generator, sample_device(noise, mask, device), torch.get_default_dtype())
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} must equal shape {shape}")
        check_finite(noise, "noise")
        return apply_mask(noise, validate_mask(mask, noise))

    @torch.no_grad()
    def p_sample_loop(self, model_fn: ModelFn, shape: Sequence[int], mask: Tensor | None = None,
                      generator: torch.Generator | None = None, noise: Tensor | None = None,
                      progress: bool = True, clip_denoised: float | None = None,
                      device: torch.device | str | None = None, **model_kwargs: Any) -> Tensor:
        r"""Ancestral sampling (Ho et al., 2020, Alg. 2) through all :math:`T` steps.

        .. math::
            x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sqrt{\tilde\beta_t}\, z, \qquad
            z \sim \mathcal{N}(0, I),\ z = 0 \text{ at } t = 0.

        Runs under :func:`torch.no_grad`. Returns the final :math:`x_0`.

        Args:
            model_fn: network ``model_fn(x_t, t, **model_kwargs)``.
            shape: output shape :math:`(B, \dots)`.
            mask: padding mask; padded entries are kept at zero throughout.
            generator: random generator for the initial noise and every step.
            noise: initial :math:`x_{T-1}` instead of a fresh draw.
            progress: show a tqdm progress bar.
            clip_denoised: clamp :math:`\hat x_0` to this range at each step.
            device: where to sample when neither ``noise`` nor ``mask`` fixes it.

        Shapes:
            - **output:** ``shape``.
        """
        x = self._init_noise(shape, noise, mask, generator, device)
        mask = validate_mask(mask, x)
        for i in progress_bar(range(self.num_timesteps - 1, -1, -1), progress, "DDPM", self.num_timesteps):
            t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
            out = self.p_mean_variance(model_fn, x, t, clip_denoised, mask, **model_kwargs)
            x = out.mean
            if i > 0:
                x = x + (0.5 * out.log_variance).exp() * randn(x.shape, generator, x.device, x.dtype)
            x = apply_mask(x, mask)
        return x

    def ddim_timesteps(self, steps: int) -> Tensor:
        """``steps`` distinct timesteps evenly spaced from :math:`T-1` down to 0 (long)."""
        steps = positive_int(steps, "steps")
        if steps > self.num_timesteps:
            raise ValueError(f"steps must be an int in [1, {self.num_timesteps}], got {steps!r}")
        # Spacing (T-1)/(steps-1) >= 1, so rounding keeps the timesteps distinct.
        return torch.linspace(self.num_timesteps - 1, 0, steps, dtype=torch.float64).round().long()

    @torch.no_grad()
    def ddim_sample_loop(self, model_fn: ModelFn, shape: Sequence[int], steps: int = 50, eta: float = 0.0,
                         mask: Tensor | None = None, generator: torch.Generator | None = None,
                         noise: Tensor | None = None, progress: bool = True,
                         clip_denoised: float | None = None, device: torch.device | str | None = None,
                         **model_kwargs: Any) -> Tensor:
        r"""DDIM sampling (Song et al., 2021, eq. 12) on a sub-sequence of timesteps.

        With :math:`\tau_i` the timesteps of :meth:`ddim_timesteps` and
        :math:`\bar\alpha_{\mathrm{prev}} = 1` after the last one,

        .. math::
            x_{\mathrm{prev}} = \sqrt{\bar\alpha_{\mathrm{prev}}}\,\hat x_0
            + \sqrt{1-\bar\alpha_{\mathrm{prev}}-\sigma^2}\,\hat\epsilon + \sigma z, \qquad
            \sigma = \eta \sqrt{\frac{1-\bar\alpha_{\mathrm{prev}}}{1-\bar\alpha_t}}
            \sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{\mathrm{prev}}}}.

        :math:`\eta = 0` is the deterministic DDIM sampler; :math:`\eta = 1` with
        ``steps = T`` is DDPM's ancestral sampler (Song et al., 2021, Sec. 4.1). Runs under
        :func:`torch.no_grad`. Returns the final :math:`x_0`.

        Args:
            steps: number of model evaluations, in :math:`[1, T]`.
            eta: stochasticity :math:`\eta \ge 0`.
            (other arguments as in :meth:`p_sample_loop`)

        Shapes:
            - **output:** ``shape``.
        """
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        timesteps = self.ddim_timesteps(steps).tolist()
        x = self._init_noise(shape, noise, mask, generator, device)
        mask = validate_mask(mask, x)
        for i, step in enumerate(progress_bar(timesteps, progress, "DDIM")):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            x0, eps = self._denoise(model_fn, x, t, clip_denoised, mask, model_kwargs)
            abar = float(self.alphas_cumprod[step])
            abar_prev = float(self.alphas_cumprod[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
            sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)) ** 0.5
            x = abar_prev ** 0.5 * x0 + max(1 - abar_prev - sigma ** 2, 0.0) ** 0.5 * eps
            if sigma > 0:
                x = x + sigma * randn(x.shape, generator, x.device, x.dtype)
            x = apply_mask(x, mask)
        return x
