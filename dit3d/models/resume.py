"""Exact resume: the random-number state travels in Lightning checkpoints.

Lightning restores weights, optimiser, schedulers and loop counters from ``ckpt_path``,
but not the global RNGs, which draw the training noise, time steps, label dropout and
augmentations here. :class:`RNGStateMixin` saves them with every checkpoint and puts
them back just before the first training batch after a resume, so the resumed steps
draw what an uninterrupted run would have drawn. (Loaders never touch the global RNG;
their order comes from ``(seed, epoch)``, see :mod:`dit3d.data.samplers`.)
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["RNGStateMixin", "get_rng_state", "set_rng_state"]

_KEY = "dit3d_rng_state"


def get_rng_state() -> dict[str, Any]:
    """The global RNG states: torch (CPU and every CUDA device), NumPy, Python ``random``, as
    tensors and plain Python types, so ``torch.load(weights_only=True)`` (Lightning's
    default) reads them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class RNGStateMixin:
    """LightningModule mixin: checkpoints carry the global RNG states, and a run resumed
    with ``Trainer.fit(..., ckpt_path=...)`` restores them at its first training batch.

    Weights loaded without resuming (``load_from_checkpoint`` and a fresh ``fit``) leave
    the RNGs alone. Under DDP every rank restores rank 0's state, as ``seed_everything``
    gives every rank the same streams in the first place.
    """

    _pending_rng_state: dict[str, Any] | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[_KEY] = get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._pending_rng_state = checkpoint.get(_KEY)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        state, self._pending_rng_state = self._pending_rng_state, None
        if state is not None and getattr(self.trainer, "ckpt_path", None) is not None:
            set_rng_state(state)
        return super().on_train_batch_start(batch, batch_idx)
