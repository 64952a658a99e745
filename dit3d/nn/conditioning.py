"""Conditioning embedders: diffusion/flow time and class labels -> ``(B, D)`` vectors."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    r"""Sinusoidal features of scalar times (Vaswani et al. 2017; Ho et al. 2020).

    .. math::
        \mathrm{emb}(t) = [\cos(t\,\omega_0), \dots, \cos(t\,\omega_{h-1}),
                          \sin(t\,\omega_0), \dots, \sin(t\,\omega_{h-1})],
        \quad \omega_i = \mathrm{max\_period}^{-i/h},\ h = \lfloor dim/2 \rfloor

    Args:
        t: times, any real values (integer steps or scaled continuous times).
        dim: feature size; an odd ``dim`` gets one zero column.
        max_period: the slowest wavelength.

    Shapes:
        t: ``(B,)`` -> ``(B, dim)``
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    r"""Embeds diffusion steps or flow-matching times into a ``(B, D)`` conditioning vector.

    .. math:: c = W_2\,\mathrm{SiLU}(W_1\,\mathrm{emb}(s \cdot t) + b_1) + b_2

    DDPM hands the network integer steps ``t in {0, ..., T-1}``; use ``time_scale=1``.
    Flow matching hands continuous ``t in [0, 1]``; use ``time_scale=1000`` so the
    sinusoids see the same range of arguments as a 1000-step DDPM (otherwise the fast
    frequencies barely turn over on [0, 1] and nearby times look alike).

    Args:
        hidden_size: output width ``D``.
        frequency_size: number of sinusoidal features fed to the MLP.
        time_scale: multiplier ``s`` applied to ``t`` before the sinusoids.
        max_period: slowest sinusoid period.

    Shapes:
        t: ``(B,)`` integer or float -> ``(B, D)``
    """

    def __init__(self, hidden_size: int, frequency_size: int = 256, time_scale: float = 1.0,
                 max_period: float = 10000.0) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.time_scale = time_scale
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: Tensor) -> Tensor:
        if t.dim() != 1:
            raise ValueError(f"TimestepEmbedder expects times of shape (B,), got {tuple(t.shape)}")
        freq = timestep_embedding(t * self.time_scale, self.frequency_size, self.max_period)  # (B, F)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (B, D)


class LabelEmbedder(nn.Module):
    r"""Class-label table with an extra *null* class for classifier-free guidance.

    Row ``num_classes`` of the table is the null (unconditional) embedding. Training
    replaces each label by the null class with probability ``dropout_prob``
    (Ho & Salimans 2022), so one network learns both p(x|y) and p(x). The drop is an
    explicit call, :meth:`drop_labels`, made once per batch by the training step, not a
    side effect of ``forward``: a step that calls the network twice (self-conditioning)
    must show both calls the same labels.

    Args:
        num_classes: number of real classes; labels are ``0..num_classes-1``.
        hidden_size: output width ``D``.
        dropout_prob: probability used by :meth:`drop_labels`.

    Shapes:
        labels: ``(B,)`` long, values in ``[0, num_classes]`` (``num_classes`` = null)
        -> ``(B, D)``
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def drop_labels(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Replace each label by the null class with probability ``dropout_prob``."""
        # draw where the generator lives, then move: same seed, same drops on any device
        u = torch.rand(labels.shape, generator=generator, device=generator.device if generator else labels.device)
        drop = u.to(labels.device) < self.dropout_prob
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def forward(self, labels: Tensor, force_drop: Tensor | None = None) -> Tensor:
        if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be an integer tensor of shape (B,), got {labels.dtype} {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() > self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = null class), "
                f"got range [{int(labels.min())}, {int(labels.max())}]"
            )
        if force_drop is not None:
            labels = torch.where(force_drop.bool(), torch.full_like(labels, self.null_class), labels)
        return self.embedding_table(labels)  # (B, D)
