r"""Flow matching with the linear (rectified-flow) interpolant.

Noise sits at :math:`t = 0` and data at :math:`t = 1` (the convention of ADiT):

.. math::
    x_t = (1 - t)\, x_0 + t\, x_1, \qquad x_0 \sim \mathcal{N}(0, I),\ x_1 \sim p_{\mathrm{data}},

and the network regresses the conditional velocity :math:`u = x_1 - x_0` (Lipman et al.,
2023, "Flow Matching for Generative Modeling"; Liu et al., 2023, "Flow Straight and
Fast"), whose conditional expectation :math:`v(x, t) = \mathbb{E}[x_1 - x_0 \mid x_t = x]`
is the marginal velocity field. Sampling integrates :math:`\dot x = v(x, t)` from 0 to 1.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from dit3d.checks import finite_float, positive_int
from ._utils import (ModelFn, append_dims, call_model, check_batch_vector, check_finite, check_option,
                     progress_bar, rand, randn, sample_device)
from .coupling import COUPLINGS, permutation_coupling
from .masking import apply_mask, masked_mean, validate_mask

__all__ = ["FlowMatching"]

PREDICTIONS = ("velocity", "x1")
TIME_SAMPLINGS = ("uniform", "logit_normal")
SOLVERS = ("euler", "heun")


class FlowMatching:
    r"""Flow-matching objective and ODE sampler over any tensor shape :math:`(B, \dots)`.

    The network is ``model_fn(x_t, t, **model_kwargs)`` with float ``t`` in
    :math:`[0, 1]` of shape :math:`(B,)`. It outputs either the velocity
    :math:`\hat v` or the data estimate :math:`\hat x_1`; the two are related by

    .. math::
        \hat v = \frac{\hat x_1 - x_t}{\max(1 - t,\ \delta)}, \qquad
        \hat x_1 = x_t + (1 - t)\, \hat v,

    where :math:`\delta` (``min_one_minus_t``) keeps the division finite near :math:`t = 1`.

    Training times are uniform or logit-normal, :math:`t = \sigma(m + s\, n)` with
    :math:`n \sim \mathcal{N}(0, 1)` (Esser et al., 2024, "Scaling Rectified Flow
    Transformers"), which spends more steps at intermediate noise levels.

    Self-conditioning (Chen, Zhang & Hinton, 2022, "Analog Bits"): with probability
    ``self_condition_prob`` per batch, the network first runs without gradients on
    ``self_cond=0`` and its :math:`\hat x_1` is fed back, detached, as ``self_cond``;
    otherwise ``self_cond=0``. The sampler feeds each step the previous estimate.
    When the probability is 0 the ``self_cond`` keyword is never passed.

    Coupling: ``"independent"`` pairs data with noise as drawn; ``"permutation"`` treats
    axis 1 as a set of tokens and reorders each sample's noise tokens to the
    optimal-transport assignment onto its data tokens
    (:func:`~dit3d.objectives.coupling.permutation_coupling`): straighter, less crossing
    paths for set data such as atoms, with sampling unchanged.

    Args:
        prediction: network output, ``"velocity"`` or ``"x1"``.
        time_sampling: training-time law, ``"uniform"`` or ``"logit_normal"``.
        logit_mean: :math:`m` of the logit-normal law.
        logit_std: :math:`s > 0` of the logit-normal law.
        self_condition_prob: probability of a self-conditioning pass, in :math:`[0, 1]`.
        min_one_minus_t: :math:`\delta > 0` above.
        coupling: ``"independent"`` or ``"permutation"`` (training pairs only).

    Example:
        >>> import torch
        >>> fm = FlowMatching(prediction="x1")
        >>> x0, x1 = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)
        >>> fm.interpolate(x0, x1, torch.tensor([0.25, 1.0]))[:, 0, 0]
        tensor([0.2500, 1.0000])
    """

    def __init__(self, prediction: str = "velocity", time_sampling: str = "uniform", logit_mean: float = 0.0,
                 logit_std: float = 1.0, self_condition_prob: float = 0.0, min_one_minus_t: float = 1e-3,
                 coupling: str = "independent") -> None:
        check_option("prediction", prediction, PREDICTIONS)
        check_option("coupling", coupling, COUPLINGS)
        check_option("time_sampling", time_sampling, TIME_SAMPLINGS)
        if logit_std <= 0:
            raise ValueError(f"logit_std must be > 0, got {logit_std}")
        if not 0.0 <= self_condition_prob <= 1.0:
            raise ValueError(f"self_condition_prob must lie in [0, 1], got {self_condition_prob}")
        if not 0.0 < min_one_minus_t <= 1.0:
            raise ValueError(f"min_one_minus_t must lie in (0, 1], got {min_one_minus_t}")
        self.prediction = prediction
        self.time_sampling = time_sampling
        self.logit_mean = logit_mean
        self.logit_std = logit_std
        self.self_condition_prob = self_condition_prob
        self.min_one_minus_t = min_one_minus_t
        self.coupling = coupling

    # ------------------------------------------------------------- basic maths
    def sample_time(self, batch_size: int, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        r"""Draw training times :math:`t \in [0, 1]`, uniform or logit-normal.

        Shapes:
            - **output:** :math:`(B,)`.
        """
        device = torch.device(device) if device is not None else torch.device("cpu")
        if self.time_sampling == "uniform":
            return rand((batch_size,), generator, device, dtype)
        n = randn((batch_size,), generator, device, dtype)
        return torch.sigmoid(self.logit_mean + self.logit_std * n)

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        r""":math:`x_t = (1-t)\, x_0 + t\, x_1`.

        Shapes:
            - **x0, x1, output:** :math:`(B, \dots)`; **t:** :math:`(B,)`
        """
        if x0.shape != x1.shape:
            raise ValueError(f"x0 shape {tuple(x0.shape)} must equal x1 shape {tuple(x1.shape)}")
        self._check_t(t, x1)
        t = append_dims(t.to(x1.dtype), x1.dim())
        return (1 - t) * x0 + t * x1

    def velocity_from_x1(self, x_t: Tensor, t: Tensor, x1_hat: Tensor) -> Tensor:
        r""":math:`\hat v = (\hat x_1 - x_t) / \max(1-t, \delta)`."""
        one_minus = append_dims((1 - t.to(x_t.dtype)).clamp(min=self.min_one_minus_t), x_t.dim())
        return (x1_hat - x_t) / one_minus

    def x1_from_velocity(self, x_t: Tensor, t: Tensor, v_hat: Tensor) -> Tensor:
        r""":math:`\hat x_1 = x_t + (1-t)\, \hat v` (exact: :math:`x_1 = x_t + (1-t)(x_1-x_0)`)."""
        return x_t + append_dims(1 - t.to(x_t.dtype), x_t.dim()) * v_hat

    def to_velocity(self, x_t: Tensor, t: Tensor, model_out: Tensor) -> Tensor:
        """Velocity estimate from the network output, whatever ``prediction`` is."""
        return model_out if self.prediction == "velocity" else self.velocity_from_x1(x_t, t, model_out)

    def to_x1(self, x_t: Tensor, t: Tensor, model_out: Tensor) -> Tensor:
        """Data estimate from the network output, whatever ``prediction`` is."""
        return model_out if self.prediction == "x1" else self.x1_from_velocity(x_t, t, model_out)

    def _check_t(self, t: Tensor, x: Tensor) -> None:
        check_batch_vector(t, x.shape[0])
        if not t.dtype.is_floating_point:
            raise ValueError(f"t must be a float tensor of times in [0, 1], got {t.dtype}")
        if t.numel() and not bool(((t >= 0) & (t <= 1)).all()):
            raise ValueError("t must lie in [0, 1] (0 = noise, 1 = data), "
                             f"got values in [{float(t.min())}, {float(t.max())}]")

    # ---------------------------------------------------------------- training
    def _self_condition(self, model_fn: ModelFn, x_t: Tensor, t: Tensor, mask: Tensor | None,
                        generator: torch.Generator | None, model_kwargs: dict[str, Any]) -> Tensor:
        self_cond = torch.zeros_like(x_t)
        if float(rand((), generator, x_t.device)) < self.self_condition_prob:
            with torch.no_grad():
                out = call_model(model_fn, x_t, t, mask, self_cond=self_cond, **model_kwargs)
            self_cond = apply_mask(self.to_x1(x_t, t, out), mask).detach()
        return self_cond

    def training_loss(self, model_fn: ModelFn, x1: Tensor, mask: Tensor | None = None,
                      generator: torch.Generator | None = None, t: Tensor | None = None,
                      **model_kwargs: Any) -> Tensor:
        r"""Conditional flow-matching loss.

        .. math::
            \mathcal{L} = \mathbb{E}_{t, x_0, x_1} \lVert \hat v(x_t, t) - (x_1 - x_0) \rVert^2
            \quad\text{or}\quad
            \mathbb{E}_{t, x_0, x_1} \lVert \hat x_1(x_t, t) - x_1 \rVert^2,

        for ``prediction="velocity"`` and ``"x1"`` respectively. With a mask, padded
        entries of :math:`x_1` and of the noise are zeroed, ``mask=`` is forwarded to
        ``model_fn``, and the mean runs over real elements only.

        Args:
            model_fn: network ``model_fn(x_t, t, **model_kwargs)``.
            x1: data.
            mask: optional bool padding mask, ``True`` = real.
            generator: random generator for :math:`t`, :math:`x_0` and the self-conditioning coin.
            t: fixed times instead of random ones.
            **model_kwargs: extra network inputs (conditioning).

        Shapes:
            - **x1:** :math:`(B, \dots)`; **mask:** prefix of ``x1.shape``; **t:** :math:`(B,)`
            - **output:** scalar.
        """
        mask = validate_mask(mask, x1)
        check_finite(x1, "x1")
        if "self_cond" in model_kwargs:
            raise ValueError("self_cond is supplied by FlowMatching itself; do not pass it as a model kwarg")
        x1 = apply_mask(x1, mask)
        if t is None:
            t = self.sample_time(x1.shape[0], generator, x1.device, x1.dtype)
        x0 = apply_mask(randn(x1.shape, generator, x1.device, x1.dtype), mask)
        if self.coupling == "permutation":
            x0 = permutation_coupling(x0, x1, mask)
        x_t = self.interpolate(x0, x1, t)
        kwargs = dict(model_kwargs)
        if self.self_condition_prob > 0:
            kwargs["self_cond"] = self._self_condition(model_fn, x_t, t, mask, generator, model_kwargs)
        out = call_model(model_fn, x_t, t, mask, **kwargs)
        target = x1 - x0 if self.prediction == "velocity" else x1
        return masked_mean((out - target) ** 2, mask)

    # ---------------------------------------------------------------- sampling
    def _velocity(self, model_fn: ModelFn, x: Tensor, t: float, mask: Tensor | None,
                  self_cond: Tensor | None, model_kwargs: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        t_vec = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        kwargs = dict(model_kwargs) if self_cond is None else {**model_kwargs, "self_cond": self_cond}
        out = call_model(model_fn, x, t_vec, mask, **kwargs)
        if self_cond is not None:
            self_cond = apply_mask(self.to_x1(x, t_vec, out), mask)
        return self.to_velocity(x, t_vec, out), self_cond

    @torch.no_grad()
    def sample(self, model_fn: ModelFn, shape: Sequence[int] | None = None, x0: Tensor | None = None,
               steps: int = 100, solver: str = "euler", mask: Tensor | None = None,
               generator: torch.Generator | None = None, progress: bool = True,
               device: torch.device | str | None = None, t_start: float = 0.0, temperature: float = 1.0,
               **model_kwargs: Any) -> Tensor:
        r"""Integrate :math:`\dot x = \hat v(x, t)` from :math:`t = 0` (or ``t_start``) to 1 in uniform steps.

        Euler: :math:`x \leftarrow x + h\, \hat v(x, t)`. Heun (explicit trapezoid, two
        evaluations per step): :math:`\tilde x = x + h\, \hat v(x, t)`,
        :math:`x \leftarrow x + \tfrac{h}{2}\,[\hat v(x, t) + \hat v(\tilde x, t + h)]`.
        With ``prediction="x1"`` Heun's last step is an Euler step, because
        :math:`\hat v` is singular at :math:`t = 1`; that Euler step lands on
        :math:`\hat x_1` (up to rounding). Runs under :func:`torch.no_grad`.

        Args:
            model_fn: network ``model_fn(x_t, t, **model_kwargs)``.
            shape: output shape, when ``x0`` is not given.
            x0: starting noise at :math:`t = 0`; drawn from :math:`\mathcal{N}(0, I)` if ``None``.
            steps: number of integration steps :math:`1/h`.
            solver: ``"euler"`` or ``"heun"``.
            mask: padding mask; padded entries are kept at zero throughout.
            generator: random generator for ``x0``.
            progress: show a tqdm progress bar.
            device: where to sample when neither ``x0`` nor ``mask`` fixes it.
            t_start: start time in ``[0, 1)``; with ``x0`` a partly noised sample
                :math:`x_{t_\mathrm{start}}` (e.g. to probe how a model finishes real data).
            temperature: scale of the drawn noise, :math:`x_0 \sim \mathcal{N}(0, \tau^2 I)`;
                below 1 it trades diversity for samples nearer the modes (reduced-temperature
                sampling, as in Glow, Kingma & Dhariwal 2018, Sec. 5); 1 is the trained prior.
                Only for drawn noise: with ``x0`` it must stay 1.

        Shapes:
            - **output:** ``shape`` (or ``x0.shape``), the sample at :math:`t = 1`.
        """
        check_option("solver", solver, SOLVERS)
        steps = positive_int(steps, "steps")
        if not 0.0 <= t_start < 1.0:
            raise ValueError(f"t_start must lie in [0, 1), got {t_start!r}")
        if t_start > 0 and x0 is None:  # drawn noise is the sample at t = 0, not at t_start
            raise ValueError(f"t_start={t_start} needs x0, a partly noised sample at that time; "
                             "leave t_start at 0 to sample from noise")
        x = self._initial_noise(shape, x0, mask, generator, device, temperature)
        mask = validate_mask(mask, x)
        self_cond = torch.zeros_like(x) if self.self_condition_prob > 0 else None
        times = torch.linspace(float(t_start), 1.0, steps + 1, dtype=torch.float64).tolist()
        for i in progress_bar(range(steps), progress, f"flow ({solver})"):
            t, h = times[i], times[i + 1] - times[i]
            v, self_cond = self._velocity(model_fn, x, t, mask, self_cond, model_kwargs)
            last_euler = self.prediction == "x1" and i == steps - 1
            if solver == "heun" and not last_euler:
                x_euler = apply_mask(x + h * v, mask)
                v_next, self_cond = self._velocity(model_fn, x_euler, times[i + 1], mask, self_cond, model_kwargs)
                v = 0.5 * (v + v_next)
            x = apply_mask(x + h * v, mask)
        return x

    def _initial_noise(self, shape: Sequence[int] | None, x0: Tensor | None, mask: Tensor | None,
                       generator: torch.Generator | None, device: torch.device | str | None,
                       temperature: float = 1.0) -> Tensor:
        temperature = finite_float(temperature, "temperature", positive=True)
        if x0 is None:
            if shape is None:
                raise ValueError("give either shape or x0 to FlowMatching.sample")
            validate_mask(mask, tuple(shape))
            x0 = randn(tuple(shape), generator, sample_device(None, mask, device), torch.get_default_dtype())
            if temperature != 1.0:
                x0 = x0 * temperature
        elif temperature != 1.0:
            raise ValueError("temperature scales drawn noise; with x0 given, scale x0 yourself")
        elif shape is not None and tuple(shape) != tuple(x0.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with x0 shape {tuple(x0.shape)}; give one of them")
        check_finite(x0, "x0")
        return apply_mask(x0, validate_mask(mask, x0))
