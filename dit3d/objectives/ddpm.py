r"""Discrete-time Gaussian diffusion: DDPM training and DDPM / DDIM sampling.

Forward process (Ho et al., 2020, "Denoising Diffusion Probabilistic Models"):

.. math::
    q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t) I\big),
    \qquad \bar\alpha_t = \prod_{s=0}^{t} (1 - \beta_s), \quad t = 0, \dots, T-1.

The network may predict the noise :math:`\epsilon` (Ho et al., 2020), the clean data
:math:`x_0`, or the velocity :math:`v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\, x_0`
(Salimans & Ho, 2022, "Progressive Distillation"). Everything is converted to an
:math:`x_0` estimate before sampling, so the samplers do not care which one is used.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from ._utils import ModelFn, append_dims, call_model, check_batch_vector, check_finite, check_option, randint, randn
from .ddpm_sampling import DDPMSamplingMixin
from .masking import apply_mask, masked_mean, validate_mask
from .schedules import get_beta_schedule

__all__ = ["GaussianDiffusion", "PMeanVariance"]

PREDICTIONS = ("eps", "x0", "v")


def check_min_snr_gamma(gamma: float | None) -> None:
    """Raise ``ValueError`` unless ``gamma`` is ``None`` (no weighting) or a number > 0."""
    if gamma is not None and not gamma > 0:
        raise ValueError(f"min_snr_gamma must be > 0 (the paper uses 5) or None for no weighting, got {gamma!r}")


class PMeanVariance(NamedTuple):
    """Reverse-step Gaussian :math:`p_\\theta(x_{t-1} \\mid x_t)` and the x0 estimate behind it."""

    mean: Tensor
    variance: Tensor
    log_variance: Tensor
    pred_x0: Tensor


class GaussianDiffusion(DDPMSamplingMixin):
    r"""DDPM objective and samplers over any tensor shape :math:`(B, \dots)`.

    Holds only the noise schedule, no parameters: the network is passed to each method
    as ``model_fn(x_t, t, **model_kwargs)`` with integer ``t`` of shape :math:`(B,)`.
    Samplers: :meth:`p_sample_loop` (ancestral) and :meth:`ddim_sample_loop`.
    Schedule constants are precomputed in float64 and cast to the data's dtype when
    indexed.

    Args:
        num_timesteps: number of diffusion steps :math:`T`.
        schedule: beta schedule name, ``"linear"`` or ``"cosine"``.
        prediction: what the network outputs: ``"eps"``, ``"x0"`` or ``"v"``.
        beta_start: first beta of the linear schedule (ignored by ``"cosine"``).
        beta_end: last beta of the linear schedule (ignored by ``"cosine"``).

    Example:
        >>> import torch
        >>> diffusion = GaussianDiffusion(num_timesteps=100, prediction="v")
        >>> x_t = diffusion.q_sample(torch.zeros(2, 5, 3), torch.tensor([0, 99]))
        >>> x_t.shape
        torch.Size([2, 5, 3])
        >>> GaussianDiffusion(**diffusion.config).prediction  # rebuilt from its config
        'v'
    """

    def __init__(self, num_timesteps: int = 1000, schedule: str = "linear", prediction: str = "eps",
                 beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        check_option("prediction", prediction, PREDICTIONS)
        kwargs = {"beta_start": beta_start, "beta_end": beta_end} if schedule == "linear" else {}
        self.num_timesteps = num_timesteps
        self.prediction = prediction
        #: the constructor arguments (JSON-ready), stored with the weights by generators
        self.config = dict(num_timesteps=int(num_timesteps), schedule=str(schedule), prediction=str(prediction),
                           beta_start=float(beta_start), beta_end=float(beta_end))
        self.betas = get_beta_schedule(schedule, num_timesteps, **kwargs)
        self._precompute(self.betas)

    def _precompute(self, betas: Tensor) -> None:
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([betas.new_ones(1), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        one_minus = 1.0 - self.alphas_cumprod
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / one_minus
        # beta_tilde_0 = 0 would give log 0; t=0 never adds noise, so borrow t=1's value.
        first = self.posterior_variance[1:2] if len(betas) > 1 else betas[:1]
        self.posterior_log_variance_clipped = torch.log(torch.cat([first, self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / one_minus
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * alphas.sqrt() / one_minus

    # ------------------------------------------------------------------ helpers
    def _extract(self, arr: Tensor, t: Tensor, x: Tensor) -> Tensor:
        # Index on CPU in float64, then cast: keeps precision and works on devices without fp64.
        return append_dims(arr[t.cpu()].to(device=x.device, dtype=x.dtype), x.dim())

    def _check_t(self, t: Tensor, x: Tensor) -> None:
        check_batch_vector(t, x.shape[0])
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"t must hold integer timesteps (e.g. torch.long), got {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(f"t must lie in [0, {self.num_timesteps - 1}], "
                             f"got values in [{int(t.min())}, {int(t.max())}]")

    # ---------------------------------------------------------- forward process
    def q_mean_variance(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean :math:`\sqrt{\bar\alpha_t} x_0` and variance :math:`1-\bar\alpha_t` of :math:`q(x_t \mid x_0)`.

        Shapes:
            - **x0:** :math:`(B, \dots)`; **t:** :math:`(B,)` long
            - **output:** two tensors of ``x0``'s shape.
        """
        self._check_t(t, x0)
        mean = self._extract(self.sqrt_alphas_cumprod, t, x0) * x0
        var = (1.0 - self._extract(self.alphas_cumprod, t, x0)).expand_as(x0)
        return mean, var

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        r"""Draw :math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\, \epsilon`.

        Args:
            x0: clean data.
            t: integer timesteps.
            noise: :math:`\epsilon`; drawn from :math:`\mathcal{N}(0, I)` when ``None``.
            generator: random generator used when ``noise`` is ``None``.

        Shapes:
            - **x0, noise, output:** :math:`(B, \dots)`; **t:** :math:`(B,)`
        """
        self._check_t(t, x0)
        if noise is None:
            noise = randn(x0.shape, generator, x0.device, x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} must equal x0 shape {tuple(x0.shape)}")
        return (self._extract(self.sqrt_alphas_cumprod, t, x0) * x0
                + self._extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def q_posterior_mean_variance(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Exact posterior :math:`q(x_{t-1} \mid x_t, x_0) = \mathcal{N}(\tilde\mu_t, \tilde\beta_t I)`.

        .. math::
            \tilde\mu_t = \frac{\beta_t \sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_t} x_0
                + \frac{(1-\bar\alpha_{t-1})\sqrt{\alpha_t}}{1-\bar\alpha_t} x_t, \qquad
            \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t,

        with :math:`\bar\alpha_{-1} = 1` (Ho et al., 2020, eq. 6-7). The log-variance at
        :math:`t = 0` (where :math:`\tilde\beta_0 = 0`) is clipped to that at :math:`t = 1`.

        Returns:
            ``(mean, variance, log_variance)``, each of ``x_t``'s shape.
        """
        self._check_t(t, x_t)
        if x0.shape != x_t.shape:
            raise ValueError(f"x0 shape {tuple(x0.shape)} must equal x_t shape {tuple(x_t.shape)}")
        mean = (self._extract(self.posterior_mean_coef1, t, x_t) * x0
                + self._extract(self.posterior_mean_coef2, t, x_t) * x_t)
        var = self._extract(self.posterior_variance, t, x_t).expand_as(x_t)
        log_var = self._extract(self.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
        return mean, var, log_var

    # ------------------------------------------------------ parameterisations
    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        r"""Regression target for ``prediction``: :math:`\epsilon`, :math:`x_0`, or
        :math:`v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\, x_0`."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        return (self._extract(self.sqrt_alphas_cumprod, t, x0) * noise
                - self._extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0)

    def predict_x0(self, x_t: Tensor, t: Tensor, model_out: Tensor) -> Tensor:
        r"""Turn the network output into an :math:`x_0` estimate.

        .. math::
            \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}}
            \ \text{(eps)}, \qquad
            \hat x_0 = \sqrt{\bar\alpha_t}\, x_t - \sqrt{1-\bar\alpha_t}\, \hat v \ \text{(v)}.
        """
        if self.prediction == "x0":
            return model_out
        a = self._extract(self.sqrt_alphas_cumprod, t, x_t)
        b = self._extract(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        if self.prediction == "eps":
            return (x_t - b * model_out) / a
        return a * x_t - b * model_out

    def predict_eps(self, x_t: Tensor, t: Tensor, model_out: Tensor) -> Tensor:
        r"""Turn the network output into an :math:`\epsilon` estimate.

        .. math::
            \hat\epsilon = \frac{x_t - \sqrt{\bar\alpha_t}\,\hat x_0}{\sqrt{1-\bar\alpha_t}}
            \ \text{(x0)}, \qquad
            \hat\epsilon = \sqrt{1-\bar\alpha_t}\, x_t + \sqrt{\bar\alpha_t}\, \hat v \ \text{(v)}.
        """
        if self.prediction == "eps":
            return model_out
        a = self._extract(self.sqrt_alphas_cumprod, t, x_t)
        b = self._extract(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        if self.prediction == "x0":
            return (x_t - a * model_out) / b
        return b * x_t + a * model_out

    # ---------------------------------------------------------------- training
    def snr(self, t: Tensor) -> Tensor:
        r"""Signal-to-noise ratio :math:`\bar\alpha_t / (1 - \bar\alpha_t)` of timesteps ``t``, float64 ``(B,)``."""
        abar = self.alphas_cumprod[t.cpu()]
        return abar / (1.0 - abar)

    def min_snr_weight(self, t: Tensor, gamma: float) -> Tensor:
        r"""Min-SNR-:math:`\gamma` loss weights (Hang et al. 2023, "Efficient Diffusion
        Training via Min-SNR Weighting Strategy", Sec. 3.4).

        Each timestep's loss is weighted so that, expressed as a loss on :math:`x_0`, its
        weight is :math:`\min(\mathrm{SNR}_t, \gamma)`: the nearly clean steps stop
        dominating the gradient, which the paper finds converges several times faster.
        Because :math:`\lVert \hat\epsilon - \epsilon \rVert^2 = \mathrm{SNR}_t
        \lVert \hat x_0 - x_0 \rVert^2` and :math:`\lVert \hat v - v \rVert^2 =
        (\mathrm{SNR}_t + 1) \lVert \hat x_0 - x_0 \rVert^2`, the weight on this
        objective's own squared error is

        .. math::
            w_t = \frac{\min(\mathrm{SNR}_t, \gamma)}{\mathrm{SNR}_t}\ (\epsilon), \qquad
            \min(\mathrm{SNR}_t, \gamma)\ (x_0), \qquad
            \frac{\min(\mathrm{SNR}_t, \gamma)}{\mathrm{SNR}_t + 1}\ (v).

        Shapes:
            - **t:** :math:`(B,)` integer; **output:** :math:`(B,)` float64 on ``t``'s device.
        """
        check_min_snr_gamma(gamma)
        snr = self.snr(t)
        clipped = snr.clamp(max=float(gamma))
        denominator = {"eps": snr, "x0": torch.ones_like(snr), "v": snr + 1.0}[self.prediction]
        return (clipped / denominator).to(t.device)

    def loss_weight(self, t: Tensor, x: Tensor, min_snr_gamma: float | None) -> Tensor | float:
        """Per-sample :meth:`min_snr_weight` broadcast against ``x`` in its dtype, or 1.0
        when ``min_snr_gamma`` is ``None`` (the unweighted loss)."""
        if min_snr_gamma is None:
            return 1.0
        return append_dims(self.min_snr_weight(t, min_snr_gamma).to(x.dtype), x.dim())

    def training_loss(self, model_fn: ModelFn, x0: Tensor, mask: Tensor | None = None,
                      generator: torch.Generator | None = None, t: Tensor | None = None,
                      min_snr_gamma: float | None = None, **model_kwargs: Any) -> Tensor:
        r"""Simple DDPM loss :math:`\mathbb{E}_{t, \epsilon}\, w_t \lVert f_\theta(x_t, t) - y \rVert^2`.

        :math:`t` is uniform on :math:`\{0, \dots, T-1\}` and :math:`y` is
        :meth:`training_target`; :math:`w_t = 1` (DDPM's simple loss) or, with
        ``min_snr_gamma``, :meth:`min_snr_weight`. With a mask, padded entries of
        :math:`x_0` and of the noise are zeroed (so they cannot influence the network),
        ``mask=`` is forwarded to ``model_fn``, and the mean runs over real elements only.

        Args:
            model_fn: network ``model_fn(x_t, t, **model_kwargs)``.
            x0: clean data.
            mask: optional bool padding mask, ``True`` = real.
            generator: random generator for :math:`t` and :math:`\epsilon`.
            t: fixed timesteps instead of random ones.
            min_snr_gamma: :math:`\gamma` of Min-SNR weighting; ``None`` for none.
            **model_kwargs: extra network inputs (conditioning).

        Shapes:
            - **x0:** :math:`(B, \dots)`; **mask:** prefix of ``x0.shape``; **t:** :math:`(B,)`
            - **output:** scalar.
        """
        mask = validate_mask(mask, x0)
        check_finite(x0, "x0")
        x0 = apply_mask(x0, mask)
        if t is None:
            t = randint(self.num_timesteps, (x0.shape[0],), generator, x0.device)
        noise = apply_mask(randn(x0.shape, generator, x0.device, x0.dtype), mask)
        x_t = self.q_sample(x0, t, noise)
        out = call_model(model_fn, x_t, t, mask, **model_kwargs)
        err = (out - self.training_target(x0, noise, t)) ** 2
        return masked_mean(err * self.loss_weight(t, err, min_snr_gamma), mask)

    # ---------------------------------------------------------------- sampling
    def _denoise(self, model_fn: ModelFn, x_t: Tensor, t: Tensor, clip_denoised: float | None,
                 mask: Tensor | None, model_kwargs: dict[str, Any]) -> tuple[Tensor, Tensor]:
        out = call_model(model_fn, x_t, t, mask, **model_kwargs)
        x0 = self.predict_x0(x_t, t, out)
        if clip_denoised is None:
            return x0, self.predict_eps(x_t, t, out)
        x0 = x0.clamp(-clip_denoised, clip_denoised)
        # Re-derive eps from the clipped x0 so that the DDIM step stays self-consistent.
        b = self._extract(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        return x0, (x_t - self._extract(self.sqrt_alphas_cumprod, t, x_t) * x0) / b

    def p_mean_variance(self, model_fn: ModelFn, x_t: Tensor, t: Tensor, clip_denoised: float | None = None,
                        mask: Tensor | None = None, **model_kwargs: Any) -> PMeanVariance:
        r"""Reverse step :math:`p_\theta(x_{t-1} \mid x_t) = q(x_{t-1} \mid x_t, \hat x_0)`.

        The variance is fixed to the posterior :math:`\tilde\beta_t` ("fixed small",
        Ho et al., 2020), which is exact when the data is a single point.

        Args:
            clip_denoised: if set, clamp :math:`\hat x_0` to ``[-clip_denoised, clip_denoised]``.
            mask: padding mask, forwarded to ``model_fn``.
        """
        self._check_t(t, x_t)
        mask = validate_mask(mask, x_t)
        x0, _ = self._denoise(model_fn, x_t, t, clip_denoised, mask, model_kwargs)
        mean, var, log_var = self.q_posterior_mean_variance(x0, x_t, t)
        return PMeanVariance(mean, var, log_var, x0)
