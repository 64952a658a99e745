r"""Moving digits: clips of real handwritten digits gliding and bouncing in a square canvas.

A Moving-MNIST-style set (Srivastava et al. 2015) built from scikit-learn's bundled
handwritten digits (:mod:`dit3d.data.digits`, so no download), for the video DiT. Clip
``i`` of a split is a pure function of ``(seed, split, i)``; nothing is stored:

1. ``rng = numpy.random.default_rng([seed, s, i])`` with ``s = 0`` (train) or ``1`` (test);
2. for each of the ``num_digits`` digits: a source digit drawn uniformly from the
   split's digits, resized to ``digit_size`` pixels a side (bilinear,
   :func:`~dit3d.data.digits.digit_images`), an initial top-left position
   :math:`p_0 \sim U[0, L]^2` with :math:`L = S - d` (canvas ``S``, digit ``d``), a
   direction :math:`\theta \sim U[0, 2\pi)` and a speed
   :math:`v \sim U[v_{min}, v_{max}]` pixels per frame;
3. frame :math:`f` puts the digit at :math:`\mathrm{round}(\mathrm{fold}(p_0 + f v
   (\cos\theta, \sin\theta)))` (row, column), where
   :math:`\mathrm{fold}(u) = L - |L - (u \bmod 2L)|` reflects the straight path off the
   walls: constant velocity, elastic bounces, the digit always wholly inside;
4. digits are drawn on a black canvas with the pixel-wise maximum of their ink (in
   :math:`[0, 1]`), then mapped to :math:`x = 2u - 1`: background :math:`-1`, full ink
   :math:`+1`, the scaling of the image DiT.

Train/test split **by source digit**: the 1,797 digits are split as the image DiT's
(:func:`~dit3d.data.digits.digits_split`, stratified, ``test_fraction = 0.2``, seed 0:
1,438 train / 359 test digits); training clips only show training digits and test clips
only test digits, so a model is scored on handwriting it never saw. The number of clips
per split is a setting (default 10,000 train, 512 test), drawn from those digits with
fresh positions and velocities.

scikit-learn is an optional dependency: ``pip install "dit3d[images]"``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import Dataset

from dit3d.data.digits import DIGITS_SPLITS, DigitsLoadersMixin, digit_images, digits_split

__all__ = ["MovingDigits", "MovingDigitsDataModule", "bounce", "render_clip"]

_SPLIT_CODE = {"train": 0, "test": 1}
_STAGE_SPLITS = {"fit": ("train", "test"), "validate": ("test",), "test": ("test",), "predict": ("test",)}


def bounce(start: np.ndarray, velocity: np.ndarray, num_frames: int, limit: float) -> np.ndarray:
    r"""Integer positions of a point moving at constant ``velocity`` inside ``[0, limit]``,
    reflected elastically at both ends: :math:`\mathrm{round}(L - |L - ((p_0 + f v) \bmod 2L)|)`.

    Args:
        start: initial positions ``(..., 2)``.
        velocity: pixels per frame ``(..., 2)``.
        num_frames: ``F``.
        limit: ``L >= 0``; ``L = 0`` pins the point at 0.

    Shapes:
        -> ``(..., F, 2)`` int64, every value in ``[0, round(L)]``

    Example:
        >>> bounce(np.array([1.0, 0.0]), np.array([2.0, 0.0]), 5, limit=4.0)[:, 0].tolist()
        [1, 3, 3, 1, 1]
    """
    f = np.arange(num_frames, dtype=np.float64)[:, None]  # (F, 1)
    u = start[..., None, :] + f * velocity[..., None, :]  # (..., F, 2)
    if limit <= 0:
        return np.zeros(u.shape, dtype=np.int64)
    folded = limit - np.abs(limit - np.mod(u, 2.0 * limit))
    return np.clip(np.rint(folded), 0, np.floor(limit)).astype(np.int64)


def render_clip(digits: Sequence[np.ndarray], positions: np.ndarray, image_size: int) -> np.ndarray:
    """Draw digits (ink in ``[0, 1]``) at top-left ``positions`` on a black canvas, taking
    the pixel-wise maximum where they overlap.

    Shapes:
        digits: ``K`` arrays ``(d, d)``; positions: ``(K, F, 2)`` (row, column) ->
        ``(F, S, S)`` float32 in ``[0, 1]``
    """
    F = positions.shape[1]
    canvas = np.zeros((F, image_size, image_size), dtype=np.float32)
    for ink, path in zip(digits, positions):
        d = ink.shape[0]
        for f, (r, c) in enumerate(path):
            np.maximum(canvas[f, r:r + d, c:c + d], ink, out=canvas[f, r:r + d, c:c + d])
    return canvas


class MovingDigits(Dataset):
    """One split of the moving digits as ``{"video": (1, F, S, S) float32 in [-1, 1], "label": (K,) int64,
    "digit": (K,) int64, "position": (K, F, 2) int64}`` items (``K = num_digits``; ``digit`` indexes
    ``load_digits()``, ``position`` is each digit's top-left (row, column) per frame).

    Args:
        split: ``"train"`` or ``"test"`` (disjoint source digits; see the module doc).
        num_sequences: clips in the split.
        num_frames: ``F`` frames per clip.
        image_size: canvas side ``S``.
        digit_size: side ``d`` of each digit (8x8 sources resized bilinearly), ``8 <= d <= S``.
        num_digits: digits per clip ``K``.
        speed: ``(v_min, v_max)`` pixels per frame.
        test_fraction: share of each class's source digits kept for test clips.
        seed: seeds the digit split and every clip.

    Example:
        >>> ds = MovingDigits("test", num_sequences=4, num_frames=8)  # doctest: +SKIP
        >>> ds[0]["video"].shape  # doctest: +SKIP
        torch.Size([1, 8, 32, 32])
    """

    def __init__(self, split: str = "train", num_sequences: int = 10000, num_frames: int = 8, image_size: int = 32,
                 digit_size: int = 16, num_digits: int = 1, speed: Sequence[float] = (1.0, 3.0),
                 test_fraction: float = 0.2, seed: int = 0) -> None:
        if split not in DIGITS_SPLITS:
            raise ValueError(f"split must be one of {DIGITS_SPLITS}, got {split!r}")
        check_settings(num_sequences, num_frames, image_size, digit_size, num_digits, speed)
        images, labels = digit_images(digit_size, "bilinear")  # (1797, 1, d, d) in [-1, 1]
        pool = digits_split(labels.numpy(), test_fraction, seed)[split]
        self.split, self.seed, self.pool = split, int(seed), pool
        self.num_sequences, self.num_frames, self.image_size = int(num_sequences), int(num_frames), int(image_size)
        self.digit_size, self.num_digits = int(digit_size), int(num_digits)
        self.speed = (float(speed[0]), float(speed[1]))
        self.ink = ((images[:, 0].numpy() + 1.0) / 2.0).astype(np.float32)  # (1797, d, d) in [0, 1]
        self.labels = labels.numpy()

    def __len__(self) -> int:
        return self.num_sequences

    def clip(self, i: int) -> dict[str, np.ndarray]:
        """Clip ``i`` as NumPy arrays: ``video (F, S, S)`` ink in ``[0, 1]``, ``digit (K,)``,
        ``position (K, F, 2)``."""
        if not 0 <= i < self.num_sequences:
            raise IndexError(f"clip {i} out of range for {self.num_sequences} clips")
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.split], int(i)])
        K, limit = self.num_digits, float(self.image_size - self.digit_size)
        digit = self.pool[rng.integers(len(self.pool), size=K)]  # (K,)
        start = rng.uniform(0.0, limit, size=(K, 2))
        theta = rng.uniform(0.0, 2.0 * np.pi, size=K)
        speed = rng.uniform(*self.speed, size=K)
        velocity = speed[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (K, 2)
        position = bounce(start, velocity, self.num_frames, limit)  # (K, F, 2)
        video = render_clip([self.ink[j] for j in digit], position, self.image_size)  # (F, S, S)
        return {"video": video, "digit": digit, "position": position}

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        c = self.clip(i)
        video = torch.from_numpy(c["video"])[None] * 2.0 - 1.0  # (1, F, S, S) in [-1, 1]
        return {"video": video, "label": torch.from_numpy(self.labels[c["digit"]]),
                "digit": torch.from_numpy(c["digit"]), "position": torch.from_numpy(c["position"])}

    def videos(self, indices: Sequence[int]) -> Tensor:
        """Clips ``indices`` stacked: ``(n, 1, F, S, S)`` in ``[-1, 1]``."""
        return torch.stack([self[i]["video"] for i in indices])


def check_settings(num_sequences: int, num_frames: int, image_size: int, digit_size: int, num_digits: int,
                   speed: Sequence[float]) -> None:
    """Raise a clear error on settings :class:`MovingDigits` cannot honour."""
    for name, v, low in (("num_sequences", num_sequences, 1), ("num_frames", num_frames, 1),
                         ("num_digits", num_digits, 1), ("digit_size", digit_size, 8)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < digit_size:
        raise ValueError(f"image_size must be an int >= digit_size ({digit_size}), got {image_size!r}")
    if len(speed) != 2 or not 0.0 <= float(speed[0]) <= float(speed[1]):
        raise ValueError(f"speed must be (v_min, v_max) pixels per frame with 0 <= v_min <= v_max, got {speed!r}")


class MovingDigitsDataModule(DigitsLoadersMixin, LightningDataModule):
    """Loaders of the moving digits: batches ``{"video": (B, 1, F, S, S) float32 in [-1, 1],
    "label": (B, K), "digit": (B, K), "position": (B, K, F, 2)}``.

    The training clips are shuffled per epoch by ``seed + epoch`` (runs and resumed runs
    repeat); validation, test and predict run over the test clips in order. Clips are
    drawn on the fly (a few microseconds each), so nothing but the 1,797 digits is held
    in memory.

    Args:
        batch_size: clips per batch.
        num_frames: ``F`` (8-16 in the shipped configs; the model must be built for it).
        image_size: canvas side ``S`` (32).
        digit_size: digit side ``d``.
        num_digits: digits per clip.
        speed: ``(v_min, v_max)`` pixels per frame.
        num_train, num_test: clips per split.
        test_fraction: share of each class's source digits held out for test clips.
        seed: seeds the digit split, the clips and the training shuffle.
        num_workers: loader worker processes.
        drop_last: drop the last incomplete training batch.
    """

    def __init__(self, batch_size: int = 32, num_frames: int = 8, image_size: int = 32, digit_size: int = 16,
                 num_digits: int = 1, speed: Sequence[float] = (1.0, 3.0), num_train: int = 10000,
                 num_test: int = 512, test_fraction: float = 0.2, seed: int = 0, num_workers: int = 0,
                 drop_last: bool = False) -> None:
        super().__init__()
        check_settings(num_train, num_frames, image_size, digit_size, num_digits, speed)
        check_settings(num_test, num_frames, image_size, digit_size, num_digits, speed)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.save_hyperparameters()
        self.batch_size, self.num_workers, self.drop_last, self.seed = batch_size, num_workers, drop_last, seed
        self.settings = dict(num_frames=num_frames, image_size=image_size, digit_size=digit_size,
                             num_digits=num_digits, speed=tuple(speed), test_fraction=test_fraction, seed=seed)
        self.sizes = {"train": num_train, "test": num_test}
        self.datasets: dict[str, MovingDigits] = {}

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """``(C, F, H, W)`` of the clips: ``(1, F, S, S)``."""
        s = self.settings
        return (1, s["num_frames"], s["image_size"], s["image_size"])

    def _dataset(self, split: str) -> MovingDigits:
        if split not in self.datasets:
            self.datasets[split] = MovingDigits(split, self.sizes[split], **self.settings)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage is not None and stage not in _STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {tuple(_STAGE_SPLITS)} or None")
        for split in _STAGE_SPLITS[stage] if stage else DIGITS_SPLITS:
            self._dataset(split)
