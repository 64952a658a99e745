"""Lightning data module for ShapeNet PC15k point clouds (and converted shapes in the same layout).

The dataset, its layout, categories and normalisations are in :mod:`dit3d.data.pc15k`
(re-exported here); this module adds the train / val / test loaders for ``dit3d fit``.
Point it at a copy of PointFlow's ``ShapeNetCore.v2.PC15k``::

    data:
      class_path: dit3d.data.PointCloudDataModule
      init_args: {root: /data/ShapeNetCore.v2.PC15k, categories: [chair]}

or at a tree written by ``dit3d convert shapes`` (ModelNet10 chairs on this machine).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader

from dit3d.data.pc15k import (CATEGORY_TO_SYNSET, LAYOUT, NORMALIZATIONS, SYNSET_TO_CATEGORY, EpochDrawSampler,
                              ShapeNetPC15k, _check_int, resolve_category)
from dit3d.data.samplers import ResumableDataLoader

__all__ = ["CATEGORY_TO_SYNSET", "LAYOUT", "NORMALIZATIONS", "SYNSET_TO_CATEGORY", "EpochDrawSampler",
           "PointCloudDataModule", "ShapeNetPC15k", "resolve_category"]

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class PointCloudDataModule(LightningDataModule):
    """PC15k train / val / test loaders; batches ``{"points": (B, N, 3) float32, "label": (B,) long}``.

    Training batches draw ``num_points`` of the first 10,000 points of each cloud afresh
    every epoch (seeded by ``seed``, the epoch and the cloud), in an order shuffled per
    epoch; validation and test batches keep dataset order and fixed draws. All splits
    are normalised with the training split's statistics (``"global"``) or per cloud
    (``"per-shape"``); :attr:`stats` records the choice and numbers, is saved in
    Lightning checkpoints (:meth:`state_dict`), and :meth:`denormalize` maps samples
    back to the data frame, where :meth:`reference_clouds` gives the references.

    Args:
        root: PC15k root, ``<root>/<synset>/{train,val,test}/<id>.npy``.
        categories: names (``chair``, ``airplane``, ``car``, ...) or synset ids; the
            label of a cloud is its category's index in this list.
        batch_size: clouds per batch.
        num_points: points per training draw (at most 10,000).
        normalization: ``"global"``, ``"per-shape"`` or ``"none"`` (:mod:`dit3d.data.pc15k`).
        num_workers: loader worker processes (0 = load in the main process).
        train_subset: keep the first ``train_subset`` training clouds of each category
            (statistics are then computed on those).
        seed: seeds the shuffles and draws.

    Example:
        >>> dm = PointCloudDataModule("/data/ShapeNetCore.v2.PC15k", ["chair"])  # doctest: +SKIP
        >>> dm.setup("fit"); batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        >>> batch["points"].shape, batch["label"].shape  # doctest: +SKIP
        (torch.Size([8, 2048, 3]), torch.Size([8]))
    """

    def __init__(self, root: str, categories: list[str] = ["chair"], batch_size: int = 8,  # noqa: B006 (copied)
                 num_points: int = 2048, normalization: str = "global", num_workers: int = 0,
                 train_subset: int | None = None, seed: int = 0) -> None:
        super().__init__()
        categories = [categories] if isinstance(categories, str) else list(categories)
        if not categories:
            raise ValueError("categories is empty; give at least one name or synset id, e.g. ['chair']")
        for c in categories:
            resolve_category(c)  # fail here, not at setup
        _check_int(batch_size, "batch_size", 1)
        _check_int(num_workers, "num_workers", 0)
        _check_int(num_points, "num_points", 1, 10_000)
        if train_subset is not None:
            _check_int(train_subset, "train_subset", 1)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(map(repr, NORMALIZATIONS))}, "
                             f"got {normalization!r}")
        self.save_hyperparameters()
        self.root, self.categories, self.batch_size = root, categories, batch_size
        self.num_points, self.normalization, self.num_workers = num_points, normalization, num_workers
        self.train_subset, self.seed = train_subset, seed
        self.datasets: dict[str, ShapeNetPC15k] = {}
        self._saved_stats: dict[str, Any] | None = None

    @property
    def category_names(self) -> list[str]:
        """Category names in label order."""
        return [resolve_category(c)[0] for c in self.categories]

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def _dataset(self, split: str) -> ShapeNetPC15k:
        if split not in self.datasets:
            stats = None
            if split != "train" and self.normalization == "global":
                stats = self._saved_stats or self._dataset("train").stats
            self.datasets[split] = ShapeNetPC15k(self.root, self.categories, split, self.num_points, self.normalization,
                                                 stats=stats, subset=self.train_subset if split == "train" else None,
                                                 seed=self.seed)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage is not None and stage not in _STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {tuple(_STAGE_SPLITS)} or None")
        for split in _STAGE_SPLITS[stage] if stage else ("train", "val", "test"):
            self._dataset(split)

    @property
    def stats(self) -> dict[str, Any]:
        """Normalisation choice and statistics (``"global"``: per-axis ``mean``, scalar ``std``)."""
        if self._saved_stats is not None and "train" not in self.datasets:
            return dict(self._saved_stats)
        return dict(self._dataset("train").stats)

    def denormalize(self, points: Any, split: str = "test", indices: Any = None) -> Any:
        """Map clouds ``(..., N, 3)`` from the training frame back to the data frame.

        ``"per-shape"`` needs ``indices``: cloud ``k`` uses the statistics of cloud
        ``indices[k]`` of ``split`` (PointFlow pairs sample ``k`` with reference ``k``).
        """
        if self.normalization == "global" and self._saved_stats is not None and "train" not in self.datasets:
            mean, std = np.asarray(self._saved_stats["mean"]), float(self._saved_stats["std"])
            if hasattr(points, "new_tensor"):
                return points * std + points.new_tensor(mean)
            return np.asarray(points) * std + mean
        return self._dataset(split).denormalize(points, indices)

    def reference_clouds(self, split: str = "test", num_points: int | None = None, normalized: bool = False,
                         seed: int | None = None) -> np.ndarray:
        """Held-out last 5,000 points of each cloud of ``split`` (see :meth:`ShapeNetPC15k.references`).

        Shapes:
            returns ``(S, num_points or 5000, 3)`` float32, in the data frame unless ``normalized``
        """
        return self._dataset(split).references(num_points, normalized, self.seed if seed is None else seed)

    def reference_labels(self, split: str = "test") -> np.ndarray:
        """Category index ``(S,)`` of each reference cloud of ``split``."""
        return self._dataset(split).labels.copy()

    def _loader(self, split: str) -> DataLoader:
        ds = self._dataset(split)
        sampler = None
        if split == "train":
            sampler = EpochDrawSampler(len(ds), self.seed, shuffle=True)
            # Lightning calls set_epoch only after the first pass has begun: a resumed run
            # must start from the epoch it stopped in.
            if self.trainer is not None:  # outside a Trainer the epoch advances with each pass
                sampler.set_epoch(self.trainer.current_epoch)
        # Stateful (mid-epoch resume) and with its own generator, so creating an epoch's
        # iterator leaves the global RNG alone.
        return ResumableDataLoader(ds, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                                   generator=torch.Generator().manual_seed(self.seed),
                                   num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def state_dict(self) -> dict[str, Any]:
        """Saved in Lightning checkpoints: the normalisation and its statistics."""
        return {"normalization_stats": self.stats}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        stats = state_dict.get("normalization_stats")
        if stats is not None and stats.get("normalization") != self.normalization:
            raise ValueError(f"the checkpoint's data were normalised with {stats.get('normalization')!r}, this data "
                             f"module uses {self.normalization!r}; set normalization to match")
        self._saved_stats = stats if stats and stats.get("normalization") == "global" else None
