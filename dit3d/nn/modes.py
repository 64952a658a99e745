"""Eval mode for the duration of a block: samplers run networks without dropout or label
dropout and hand them back in the mode they came in."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


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
