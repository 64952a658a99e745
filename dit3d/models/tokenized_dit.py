"""Base of the networks that put a domain tokenizer around the shared :class:`~dit3d.nn.DiT`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dit3d.nn import DiT, preset_config


class TokenizedDiT(nn.Module):
    """A tokenizer + ``self.dit`` (a :class:`~dit3d.nn.DiT`); exposes what samplers and
    training steps need of the label conditioning. Subclasses set ``self.dit``."""

    dit: nn.Module

    @staticmethod
    def build_dit(token_dim: int, grid: Sequence[int], sincos: Callable[..., Tensor], trunk: str,
                  num_classes: int, class_dropout: float, window_size: Sequence[int], window_blocks: Sequence[int],
                  depth: int | None, hidden_size: int | None, num_heads: int | None, extra_inputs: int = 0,
                  **trunk_kwargs: Any) -> DiT:
        """The shared trunk for tokens of width ``token_dim`` on ``grid``: DDPM time scale,
        fixed ``sincos(grid, width)`` positions, window attention only in ``window_blocks``;
        ``extra_inputs`` more input features per token (e.g. a conditioning flag), not predicted."""
        width = hidden_size or preset_config(trunk)["hidden_size"]
        pos = sincos(tuple(grid), width)  # (T, D); raises unless D divides as the grid needs
        return DiT(token_dim + extra_inputs, token_dim, time_scale=1.0, preset=trunk, depth=depth,
                   hidden_size=hidden_size, num_heads=num_heads, num_classes=num_classes, class_dropout=class_dropout, pos_embed=pos,
                   window_size=tuple(window_size) if window_blocks else None, window_blocks=tuple(window_blocks),
                   **trunk_kwargs)

    @property
    def null_class(self) -> int | None:
        """Label of the unconditional (null) class; ``None`` for an unconditional model."""
        return self.dit.y_embed.null_class if self.dit.y_embed is not None else None

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Label dropout for classifier-free guidance; call once per training batch."""
        return self.dit.drop_labels(y, generator)
