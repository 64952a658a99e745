"""Eval mode for the duration of a block (samplers run networks without dropout or label
dropout and hand them back in the mode they came in), and frozen eval-mode copies that a
generator keeps beside its model (a guide, a replacement autoencoder)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import copy

import torch
from torch import nn

__all__ = ["eval_mode", "frozen_copy"]


@contextmanager
def eval_mode(*nets: nn.Module | None) -> Iterator[None]:
    """Put the given networks (``None`` skipped) in eval mode, restoring each one's mode after."""
    modes = [(net, net.training) for net in nets if net is not None]
    for net, _ in modes:
        net.eval()
    try:
        yield
    finally:
        for net, mode in modes:
            net.train(mode)


def frozen_copy(net: nn.Module, device: torch.device | str) -> nn.Module:
    """A copy of ``net`` on ``device``, in eval mode and without gradients: later changes to
    ``net`` (training, moving it) leave the copy alone."""
    return copy.deepcopy(net).to(device).eval().requires_grad_(False)
