r"""Noise (beta) schedules for discrete-time Gaussian diffusion.

A schedule is a float64 tensor :math:`\beta_0, \dots, \beta_{T-1}` of per-step noise
variances for the forward process
:math:`q(x_t \mid x_{t-1}) = \mathcal{N}(\sqrt{1-\beta_t}\, x_{t-1}, \beta_t I)`.
Schedules are kept in float64 because :math:`\bar\alpha_t = \prod_{s \le t} (1-\beta_s)`
loses precision quickly in float32 for long chains.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from dit3d.checks import positive_int

__all__ = ["linear_beta_schedule", "cosine_beta_schedule", "get_beta_schedule", "BETA_SCHEDULES"]


def linear_beta_schedule(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    r"""Linearly spaced betas, the schedule of DDPM (Ho et al., 2020) and DiT-3D.

    .. math::
        \beta_t = \beta_{\mathrm{start}} + \frac{t}{T-1}
        (\beta_{\mathrm{end}} - \beta_{\mathrm{start}}), \qquad t = 0, \dots, T-1.

    The defaults are tuned for :math:`T = 1000`; with far fewer steps
    :math:`\bar\alpha_{T-1}` stays well above zero, so raise ``beta_end`` (or use the
    cosine schedule) to keep the last step close to pure noise.

    Args:
        num_timesteps: number of diffusion steps :math:`T`.
        beta_start: :math:`\beta_0`, in :math:`(0, 1)`.
        beta_end: :math:`\beta_{T-1}`, in :math:`[\beta_0, 1)`.

    Shapes:
        - **output:** :math:`(T,)`, float64.
    """
    positive_int(num_timesteps, "num_timesteps")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_beta_schedule(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    r"""Cosine schedule of Nichol & Dhariwal (2021), "Improved DDPM".

    Defines the signal level directly and derives the betas from it:

    .. math::
        f(t) = \cos^2\!\Big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\Big), \qquad
        \beta_t = \min\Big(1 - \frac{f(t+1)}{f(t)},\ \beta_{\max}\Big),

    so that :math:`\bar\alpha_t \approx f(t+1)/f(0)`. The offset :math:`s` keeps
    :math:`\beta_0` from being vanishingly small, and the clip at :math:`\beta_{\max}`
    prevents the singular :math:`\beta = 1` at the very end of the chain.

    Args:
        num_timesteps: number of diffusion steps :math:`T`.
        s: small offset, see above.
        max_beta: upper clip for every beta, in :math:`(0, 1)`.

    Shapes:
        - **output:** :math:`(T,)`, float64.
    """
    positive_int(num_timesteps, "num_timesteps")
    if s < 0.0:
        raise ValueError(f"s must be >= 0, got {s}")
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1.0 + s) * (math.pi / 2.0)) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(max=max_beta)


BETA_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_beta_schedule,
    "cosine": cosine_beta_schedule,
}


def get_beta_schedule(name: str, num_timesteps: int, **kwargs: Any) -> Tensor:
    r"""Build a beta schedule by name, so configs can say ``schedule: cosine``.

    Args:
        name: one of ``"linear"`` or ``"cosine"``.
        num_timesteps: number of diffusion steps :math:`T`.
        **kwargs: forwarded to the schedule function (e.g. ``beta_end`` or ``s``).

    Shapes:
        - **output:** :math:`(T,)`, float64.
    """
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {name!r}; choose one of {sorted(BETA_SCHEDULES)}")
    return BETA_SCHEDULES[name](num_timesteps, **kwargs)
