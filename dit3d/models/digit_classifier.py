"""Training the digit judge (:class:`~dit3d.metrics.images.DigitClassifier`) with Lightning."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset


def shift_batch(x: Tensor, generator: torch.Generator, max_shift: int) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels per axis (background -1 fills in).

    Shapes:
        x: ``(B, C, S, S)`` -> ``(B, C, S, S)``
    """
    if max_shift == 0:
        return x
    S = x.shape[-1]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)  # (B, C, S + 2m, S + 2m)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=generator)  # (B, 2)
    return torch.stack([padded[i, :, dy:dy + S, dx:dx + S] for i, (dy, dx) in enumerate(offsets.tolist())])


class DigitClassifierModule(LightningModule):
    """Cross-entropy training of a digit classifier with random translations as augmentation,
    AdamW and a cosine learning-rate decay over ``total_steps`` optimiser steps.

    The augmentation draws from ``generator``, the same one that shuffles the batches
    (:func:`digit_loader`), so one seed fixes the whole run.

    Args:
        net: the classifier to train (``(B, 1, S, S)`` images in ``[-1, 1]`` -> ``(B, 10)`` logits).
        lr, weight_decay: AdamW settings.
        total_steps: length of the cosine decay (epochs x batches per epoch).
        max_shift: largest translation in pixels (0: no augmentation).
        generator: random source of the translations.
    """

    def __init__(self, net: torch.nn.Module, lr: float, weight_decay: float, total_steps: int, max_shift: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.net, self.generator = net, generator
        self.lr, self.weight_decay, self.total_steps, self.max_shift = lr, weight_decay, total_steps, max_shift

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (B, 1, S, S), (B,)
        loss = F.cross_entropy(self.net(shift_batch(x, self.generator, self.max_shift)), y)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


class EpochPermutation(Sampler[int]):
    """A fresh ``torch.randperm(n, generator=generator)`` each epoch and nothing more drawn
    from ``generator`` (``RandomSampler`` draws a second, empty-sliced permutation at the end
    of each epoch, which would shift the augmentation's draws)."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.n


def digit_loader(images: Tensor, labels: Tensor, batch_size: int, generator: torch.Generator) -> DataLoader:
    """Batches of ``(images, labels)`` in a fresh order each epoch drawn from ``generator``
    (the last batch smaller), loaded in this process."""
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size,
                      sampler=EpochPermutation(len(labels), generator))


def fit_digit_classifier(net: torch.nn.Module, images: Tensor, labels: Tensor, *, seed: int, epochs: int,
                         batch_size: int, lr: float, weight_decay: float, max_shift: int,
                         progress: bool = False) -> torch.nn.Module:
    """Train ``net`` in place for ``epochs`` on ``images`` ``(n, 1, S, S)`` / ``labels``
    ``(n,)`` with a Lightning ``Trainer`` on the CPU (no logger, no checkpoints: the caller
    saves the result); shuffling and augmentation come from ``seed``. Without ``progress``
    Lightning's own messages are silenced too. Returns ``net`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    steps = epochs * -(-len(labels) // batch_size)
    module = DigitClassifierModule(net, lr, weight_decay, steps, max_shift, g)
    with contextlib.nullcontext() if progress else _quiet_lightning():
        trainer = Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                          enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(module, train_dataloaders=digit_loader(images, labels, batch_size, g))
    return net.eval()


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's info and warning messages (accelerators found, loader workers) off for a while."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            yield
    finally:
        log.setLevel(level)
