"""Base of the networks that put a domain tokenizer around the shared :class:`~dit3d.nn.DiT`."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class TokenizedDiT(nn.Module):
    """A tokenizer + ``self.dit`` (a :class:`~dit3d.nn.DiT`); exposes what samplers and
    training steps need of the label conditioning. Subclasses set ``self.dit``."""

    dit: nn.Module

    @property
    def null_class(self) -> int | None:
        """Label of the unconditional (null) class; ``None`` for an unconditional model."""
        return self.dit.y_embed.null_class if self.dit.y_embed is not None else None

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Label dropout for classifier-free guidance; call once per training batch."""
        return self.dit.drop_labels(y, generator)
