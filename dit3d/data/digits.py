r"""scikit-learn's bundled handwritten digits as small images for the image DiT.

The data are ``sklearn.datasets.load_digits()`` (the UCI "Optical Recognition of
Handwritten Digits" test set, shipped inside scikit-learn, so no download): 1,797 real
8x8 grey images of the digits 0-9 (178, 182, 177, 183, 181, 182, 181, 179, 174 and 180
per class), ink counts 0..16 per pixel. They are turned into ``(1, S, S)`` float32
images in :math:`[-1, 1]` (``S = 16`` by default):

1. scale to :math:`[0, 1]`: :math:`u = v / 16`;
2. ``resize="bilinear"`` (default): ``torch.nn.functional.interpolate(mode="bilinear",
   align_corners=False)`` to ``S x S``: output pixel :math:`i` samples the source at
   :math:`(i + \tfrac12)\,8/S - \tfrac12`, clamped to the border, so for ``S = 16`` every
   pixel is a 9:3:3:1 blend of its four nearest source pixels and values stay in
   :math:`[0, 1]`; ``resize="pad"``: the 8x8 image centred on an ``S x S`` background
   of zeros (:math:`(S-8)/2` pixels each side; ``S - 8`` must be even);
3. :math:`x = 2u - 1`, so background is :math:`-1` and full ink :math:`+1`.

Split (documented and stable, not scikit-learn's ``train_test_split``, whose algorithm
may change between versions): per class :math:`c` with :math:`n_c` images (in
``load_digits`` order), ``numpy.random.default_rng(seed + c).permutation(n_c)`` picks
:math:`\lfloor f n_c + \tfrac12 \rfloor` test images, ``f = test_fraction``; the rest
are training images; both splits keep ``load_digits`` order. The default ``f = 0.2``,
``seed = 0`` gives **1,438 train / 359 test** images (test per class: 36, 36, 35, 37,
36, 36, 36, 36, 35, 36), every class at 20 % +- 0.5 image in both splits.

scikit-learn is an optional dependency: ``pip install "dit3d[images]"``.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dit3d.data.samplers import EpochShuffleSampler, ResumableDataLoader

__all__ = ["DIGITS_SPLITS", "DigitsDataModule", "DigitsDataset", "RESIZE_MODES", "digit_images", "digits_split"]

RESIZE_MODES = ("bilinear", "pad")
DIGITS_SPLITS = ("train", "test")
NUM_CLASSES = 10
_STAGE_SPLITS = {"fit": ("train", "test"), "validate": ("test",), "test": ("test",), "predict": ("test",)}


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(1797, 8, 8)`` float64 ink counts 0..16 and ``(1797,)`` int64 labels (cached)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data come from scikit-learn, an optional dependency of dit3d; "
                          'install it with `pip install "dit3d[images]"` (or `pip install scikit-learn`)') from None
    digits = load_digits()
    return digits.images.astype(np.float64), digits.target.astype(np.int64)


def _check_size(image_size: int, resize: str) -> int:
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (the digits are 8x8), got {image_size!r}")
    if resize == "pad" and (image_size - 8) % 2:
        raise ValueError(f"resize='pad' centres the 8x8 digit, so image_size - 8 must be even, got {image_size}; "
                         "use an even size or resize='bilinear'")
    return int(image_size)


def digit_images(image_size: int = 16, resize: str = "bilinear") -> tuple[Tensor, Tensor]:
    """All 1,797 digits as ``[-1, 1]`` images of ``image_size`` pixels a side (see the module doc).

    Args:
        image_size: output side ``S >= 8``.
        resize: ``"bilinear"`` (upsample) or ``"pad"`` (centre on a background of -1).

    Shapes:
        -> images ``(1797, 1, S, S)`` float32, labels ``(1797,)`` int64
    """
    size = _check_size(image_size, resize)
    raw, labels = _load_digits()
    u = torch.from_numpy(raw / 16.0).float()[:, None]  # (N, 1, 8, 8) in [0, 1]
    if resize == "bilinear":
        u = u if size == 8 else F.interpolate(u, size=(size, size), mode="bilinear", align_corners=False)
    else:
        m = (size - 8) // 2
        u = F.pad(u, (m, m, m, m), value=0.0)  # (N, 1, S, S)
    return (2.0 * u - 1.0).clamp(-1.0, 1.0), torch.from_numpy(labels.copy())  # (N, 1, S, S), (N,)


def digits_split(labels: np.ndarray | Tensor, test_fraction: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    r"""Stratified train/test indices: per class :math:`c`, the first
    :math:`\lfloor f n_c + \frac12 \rfloor` positions of ``default_rng(seed + c).permutation(n_c)``
    go to test. Indices are sorted (dataset order).

    Example:
        >>> split = digits_split(np.array([0] * 10 + [1] * 5), test_fraction=0.2, seed=0)
        >>> len(split["train"]), len(split["test"])
        (12, 3)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(np.floor(test_fraction * len(members) + 0.5))
        test.append(members[np.random.default_rng(seed + int(c)).permutation(len(members))[:n_test]])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test)] = True
    return {"train": np.flatnonzero(~is_test), "test": np.flatnonzero(is_test)}


class DigitsDataset(Dataset):
    """One split of the digits as ``{"image": (1, S, S) float32 in [-1, 1], "label": () int64}`` items.

    Args:
        split: ``"train"`` or ``"test"`` (see the module doc for the split).
        image_size: image side ``S``.
        resize: ``"bilinear"`` or ``"pad"``.
        test_fraction: share of each class in the test split.
        seed: seeds the split.

    Example:
        >>> ds = DigitsDataset("train")  # doctest: +SKIP
        >>> len(ds), ds[0]["image"].shape  # doctest: +SKIP
        (1438, torch.Size([1, 16, 16]))
    """

    def __init__(self, split: str = "train", image_size: int = 16, resize: str = "bilinear",
                 test_fraction: float = 0.2, seed: int = 0) -> None:
        if split not in DIGITS_SPLITS:
            raise ValueError(f"split must be one of {DIGITS_SPLITS}, got {split!r}")
        images, labels = digit_images(image_size, resize)
        index = torch.from_numpy(digits_split(labels.numpy(), test_fraction, seed)[split])
        self.split, self.indices = split, index.numpy()
        self.images, self.labels = images[index].contiguous(), labels[index].contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}


class DigitsLoadersMixin:
    """Train/val/test loaders of a data module over the digit splits (also used by
    :class:`~dit3d.data.moving_digits.MovingDigitsDataModule`); validation and test read
    the held-out ``"test"`` split. Needs ``_dataset(split)``, ``batch_size``, ``seed``,
    ``drop_last``, ``num_workers`` and Lightning's ``trainer``."""

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # The training order depends on (seed, epoch) only and the loader is stateful, so a
        # run resumed from a checkpoint (even one saved mid-epoch) sees the batches of an
        # uninterrupted one; the loader's own generator keeps the global RNG untouched.
        ds = self._dataset(split)
        sampler = None
        if shuffle:
            sampler = EpochShuffleSampler(ds, seed=self.seed)
            if self.trainer is not None:  # outside a Trainer the epoch advances with each pass
                sampler.set_epoch(self.trainer.current_epoch)
        return ResumableDataLoader(ds, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                                   generator=torch.Generator().manual_seed(self.seed),
                                   drop_last=self.drop_last and shuffle, num_workers=self.num_workers,
                                   persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class DigitsDataModule(DigitsLoadersMixin, LightningDataModule):
    """Loaders of the digits: batches ``{"image": (B, 1, S, S) float32 in [-1, 1], "label": (B,) int64}``.

    The training split is shuffled per epoch by ``seed + epoch`` (a rerun sees the
    same batches, a resumed run those of an uninterrupted one); validation, test and predict run over the test split in dataset order
    (1,797 images leave no room for a third split; nothing is selected on it but the
    checkpoint to keep). The data are loaded on the first ``setup`` and held in memory
    (1,797 x S^2 floats).

    Args:
        batch_size: images per batch.
        image_size: image side ``S`` (16 by default; the model must be built for it).
        resize: ``"bilinear"`` (upsample, default) or ``"pad"`` (centre on background).
        test_fraction: share of each class held out (0.2: 1,438 / 359 images).
        seed: seeds the split and the training shuffle.
        num_workers: loader worker processes (0 = main process, fine for in-memory data).
        drop_last: drop the last incomplete training batch.

    Example:
        >>> dm = DigitsDataModule(batch_size=8)  # doctest: +SKIP
        >>> dm.setup("fit"); batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        >>> batch["image"].shape, batch["label"].shape  # doctest: +SKIP
        (torch.Size([8, 1, 16, 16]), torch.Size([8]))
    """

    def __init__(self, batch_size: int = 64, image_size: int = 16, resize: str = "bilinear",
                 test_fraction: float = 0.2, seed: int = 0, num_workers: int = 0, drop_last: bool = False) -> None:
        super().__init__()
        _check_size(image_size, resize)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        self.save_hyperparameters()
        self.batch_size, self.image_size, self.resize = batch_size, int(image_size), resize
        self.test_fraction, self.seed, self.num_workers, self.drop_last = test_fraction, seed, num_workers, drop_last
        self.datasets: dict[str, DigitsDataset] = {}

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    @property
    def class_names(self) -> list[str]:
        """Names in label order: ``"0"`` ... ``"9"``."""
        return [str(c) for c in range(NUM_CLASSES)]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images: ``(1, S, S)``."""
        return (1, self.image_size, self.image_size)

    def _dataset(self, split: str) -> DigitsDataset:
        if split not in self.datasets:
            self.datasets[split] = DigitsDataset(split, self.image_size, self.resize, self.test_fraction, self.seed)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage is not None and stage not in _STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {tuple(_STAGE_SPLITS)} or None")
        for split in _STAGE_SPLITS[stage] if stage else DIGITS_SPLITS:
            self._dataset(split)

    @property
    def train_dataset(self) -> DigitsDataset:
        return self._dataset("train")

    @property
    def test_dataset(self) -> DigitsDataset:
        return self._dataset("test")
