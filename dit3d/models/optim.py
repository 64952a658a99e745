"""Optimiser set-up shared by the Lightning systems."""
from __future__ import annotations

from collections.abc import Iterable

import torch


def adamw_with_warmup(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float,
                      warmup_steps: int) -> dict:
    """AdamW with a linear learning-rate warm-up over ``warmup_steps`` optimiser steps,
    in the form ``configure_optimizers`` returns. Fused AdamW (one kernel instead of
    ~10 passes over the weights) where the device supports it."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / max(1, warmup_steps)))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}
