"""Optimiser set-up shared by the Lightning systems."""
from __future__ import annotations

from collections.abc import Iterable

import torch


def check_decay(warmup_steps: int, decay_steps: int | None, name: str = "decay_steps") -> None:
    """Refuse a decay that ends inside the warm-up (``name``: the argument as the user wrote it)."""
    if decay_steps is not None and decay_steps <= warmup_steps:
        raise ValueError(f"{name} ({decay_steps}) must come after the warm-up ({warmup_steps} steps): set it to "
                         "the run's max_steps, or leave it None for a constant rate")


def warn_if_decay_misses_the_end(trainer, decay_steps: int | None, name: str) -> None:
    """Warn when a decaying rate does not end with the run: a later ``max_steps`` trains at
    rate 0 after ``decay_steps``; an earlier one stops before the decay ends."""
    if decay_steps is not None and trainer is not None and trainer.max_steps not in (-1, decay_steps):
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(f"{name}={decay_steps} but trainer.max_steps={trainer.max_steps}: the learning rate "
                       f"reaches 0 at step {decay_steps}; set both to the same step")


def lr_factor(step: int, warmup_steps: int, decay_steps: int | None = None) -> float:
    """The learning-rate multiplier after ``step`` optimiser steps: linear warm-up to 1 over
    ``warmup_steps``, then constant, or with ``decay_steps`` linear decay from 1 at the end
    of the warm-up to 0 at step ``decay_steps`` (and 0 after it)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay_steps is None:
        return 1.0
    return max(0.0, (decay_steps - step) / max(1, decay_steps - warmup_steps))


def adamw_with_warmup(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float,
                      warmup_steps: int, decay_steps: int | None = None) -> dict:
    """AdamW with a linear learning-rate warm-up over ``warmup_steps`` optimiser steps and,
    with ``decay_steps``, a linear decay to 0 at that step (:func:`lr_factor`), in the form
    ``configure_optimizers`` returns. Fused AdamW (one kernel instead of ~10 passes over
    the weights) where the device supports it.

    Raises:
        ValueError: ``decay_steps`` not after ``warmup_steps``.
    """
    check_decay(warmup_steps, decay_steps)
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, warmup_steps, decay_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
