r"""ShapeNet PC15k point clouds (PointFlow's release, used by PVD, LION and DiT-3D) as a torch Dataset.

Layout (PointFlow's ``ShapeNetCore.v2.PC15k``; point ``root`` at your copy, or make one
from voxel grids with ``dit3d convert shapes``)::

    <root>/<synset>/{train,val,test}/<id>.npy     each an array (15000, 3)

The first 10,000 points of a cloud feed training draws, the last 5,000 are held out as
its reference points for evaluation (PointFlow's ``train_points`` / ``test_points``).
Categories are named (``chair``) or given by synset id (``03001627``); see
:data:`SYNSET_TO_CATEGORY`.

**Normalisation** (the choice and its statistics are kept in :attr:`ShapeNetPC15k.stats`
so that samples can be mapped back to the data frame with :meth:`~ShapeNetPC15k.denormalize`):

* ``"global"``: :math:`x \mapsto (x - \mu) / s`, :math:`\mu` the per-axis mean and
  :math:`s` the standard deviation of all coordinates flattened (one scalar), both over
  all 15,000 points of every training shape: PointFlow's default
  (``normalize_per_shape=False, normalize_std_per_axis=False``), the one DiT-3D trains with.
  Validation and test sets reuse the training statistics.
* ``"per-shape"``: the same with :math:`\mu, s` of each cloud's own 15,000 points
  (PointFlow's ``normalize_per_shape``). (The metrics' ``per-shape`` option is a different
  map, into the unit ball: :data:`dit3d.metrics.pointclouds.NORMALIZATION_DEFINITIONS`.)
* ``"none"``: coordinates as stored.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dit3d.data.pointcloud_io import PointCloudFileError, check_clouds, load_npy

__all__ = ["CATEGORY_TO_SYNSET", "LAYOUT", "NORMALIZATIONS", "SYNSET_TO_CATEGORY", "EpochDrawSampler",
           "ShapeNetPC15k", "resolve_category"]

CLOUD_POINTS, TRAIN_POINTS, REFERENCE_POINTS = 15_000, 10_000, 5_000
SPLITS = ("train", "val", "test")
NORMALIZATIONS = ("global", "per-shape", "none")
LAYOUT = "<root>/<synset>/{train,val,test}/<id>.npy, each a (15000, 3) array (PointFlow's ShapeNetCore.v2.PC15k)"
NORMALIZATION_DEFINITIONS = {
    "global": ("x -> (x - mean) / std, mean = per-axis mean and std = one scalar std of all coordinates, "
               "over all 15000 points of every training shape (PointFlow's default, as DiT-3D)"),
    "per-shape": "x -> (x - mean) / std with the mean and scalar std of each cloud's own 15000 points (PointFlow)",
    "none": "coordinates as stored",
}

# ShapeNetCore's 55 synsets and PointFlow's names for them (from latent_3d_points' in_out.py).
SYNSET_TO_CATEGORY = {
    "02691156": "airplane", "02773838": "bag", "02801938": "basket", "02808440": "bathtub", "02818832": "bed",
    "02828884": "bench", "02876657": "bottle", "02880940": "bowl", "02924116": "bus", "02933112": "cabinet",
    "02747177": "can", "02942699": "camera", "02954340": "cap", "02958343": "car", "03001627": "chair",
    "03046257": "clock", "03207941": "dishwasher", "03211117": "monitor", "04379243": "table",
    "04401088": "telephone", "02946921": "tin_can", "04460130": "tower", "04468005": "train",
    "03085013": "keyboard", "03261776": "earphone", "03325088": "faucet", "03337140": "file",
    "03467517": "guitar", "03513137": "helmet", "03593526": "jar", "03624134": "knife", "03636649": "lamp",
    "03642806": "laptop", "03691459": "speaker", "03710193": "mailbox", "03759954": "microphone",
    "03761084": "microwave", "03790512": "motorcycle", "03797390": "mug", "03928116": "piano",
    "03938244": "pillow", "03948459": "pistol", "03991062": "pot", "04004475": "printer",
    "04074963": "remote_control", "04090263": "rifle", "04099429": "rocket", "04225987": "skateboard",
    "04256520": "sofa", "04330267": "stove", "04530566": "vessel", "04554684": "washer", "02992529": "cellphone",
    "02843684": "birdhouse", "02871439": "bookshelf",
}
CATEGORY_TO_SYNSET = {name: synset for synset, name in SYNSET_TO_CATEGORY.items()}


def resolve_category(category: str) -> tuple[str, str]:
    """``(name, synset)`` of a category given by name or by 8-digit synset id.

    Example:
        >>> resolve_category("chair"), resolve_category("02691156")
        (('chair', '03001627'), ('airplane', '02691156'))
    """
    key = str(category).strip()
    if key.lower() in CATEGORY_TO_SYNSET:
        return key.lower(), CATEGORY_TO_SYNSET[key.lower()]
    if len(key) == 8 and key.isdigit():
        return SYNSET_TO_CATEGORY.get(key, key), key
    raise ValueError(f"unknown category {category!r}: give a ShapeNet name ({', '.join(sorted(CATEGORY_TO_SYNSET))}) "
                     "or an 8-digit synset id such as 03001627")


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


def _split_files(root: Path, synset: str, name: str, split: str) -> list[Path]:
    """Sorted ``.npy`` files of one category and split, or an error that says what is missing."""
    if not root.is_dir():
        raise FileNotFoundError(f"PC15k root {root} does not exist; expected {LAYOUT}. Point root at your copy of "
                                "ShapeNetCore.v2.PC15k, or build one with `dit3d convert shapes`")
    folder = root / synset / split
    if not (root / synset).is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise FileNotFoundError(f"no folder {root / synset} for category {name!r} (synset {synset}); "
                                f"{root} holds {found or 'no category folders'}. Expected {LAYOUT}")
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder {folder} is missing; expected {LAYOUT}")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".npy" and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{folder} holds no .npy clouds; expected {LAYOUT}")
    return files


class ShapeNetPC15k(Dataset):
    """One split of PC15k clouds, held in memory, served as fixed-size random draws.

    Item ``i`` is ``{"points": (num_points, 3) float32, "label": long}``: ``num_points``
    distinct points drawn at random from the first 10,000 of cloud ``i``, normalised
    (module docstring), and the index of its category in ``categories``. The draw is
    seeded by ``(seed, epoch, i)``: ``dataset[i]`` is epoch 0, ``dataset[(i, epoch)]``
    another epoch (what :class:`EpochDrawSampler` asks for), so runs are reproducible
    whatever the number of loader workers. (PointFlow draws with replacement; these
    draws are subsets.) Memory: all clouds as float32, 180 kB per shape.

    Args:
        root: PC15k root folder (layout in the module docstring).
        categories: names or synset ids; labels follow this order.
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_points: points per draw, at most 10,000.
        normalization: ``"global"``, ``"per-shape"`` or ``"none"``.
        stats: ``"global"`` statistics to reuse (a training set's :attr:`stats`); None
            computes them from this split (do that for the training split only).
        subset: keep the first ``subset`` clouds (sorted by id) of each category.
        seed: seeds the draws.

    Raises:
        FileNotFoundError: a missing root, category or split folder, or one without clouds.
        PointCloudFileError: a cloud file that is unreadable, truncated, not ``(N, 3)``
            numbers, NaN/inf or beyond float32, or has fewer than 15,000 points.
        ValueError: bad arguments, or clouds whose points all coincide (no normalisation).

    Shapes:
        points: ``(S, 15000, 3)`` float32 as stored; labels: ``(S,)`` int64

    Example:
        >>> ds = ShapeNetPC15k("/data/ShapeNetCore.v2.PC15k", ["chair"], "train")  # doctest: +SKIP
        >>> ds[0]["points"].shape, ds.stats["std"]  # doctest: +SKIP
        (torch.Size([2048, 3]), 0.18...)
    """

    def __init__(self, root: str | os.PathLike, categories: Sequence[str] = ("chair",), split: str = "train",
                 num_points: int = 2048, normalization: str = "global", stats: dict[str, Any] | None = None,
                 subset: int | None = None, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(map(repr, NORMALIZATIONS))}, "
                             f"got {normalization!r}")
        if isinstance(categories, str):
            categories = [categories]
        if not categories:
            raise ValueError("categories is empty; give at least one name or synset id, e.g. ['chair']")
        self.num_points = _check_int(num_points, "num_points", 1, TRAIN_POINTS)
        if subset is not None:
            _check_int(subset, "subset", 1)
        self.root, self.split, self.normalization, self.seed = Path(root), split, normalization, int(seed)
        resolved = [resolve_category(c) for c in categories]
        self.categories = [name for name, _ in resolved]
        self.synsets = [synset for _, synset in resolved]
        self.files: list[Path] = []
        labels: list[int] = []
        for label, (name, synset) in enumerate(resolved):
            files = _split_files(self.root, synset, name, split)[:subset]
            self.files += files
            labels += [label] * len(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.points = np.empty((len(self.files), CLOUD_POINTS, 3), dtype=np.float32)
        for i, path in enumerate(self.files):
            arr = check_clouds(load_npy(path, "PC15k cloud"), path, batched=False, min_points=CLOUD_POINTS)
            if np.abs(arr).max() > np.finfo(np.float32).max:
                raise PointCloudFileError(path, "coordinates overflow float32", fix="rescale or regenerate the cloud")
            self.points[i] = arr[:CLOUD_POINTS]
        self.shape_mean = self.shape_std = None
        if normalization == "per-shape":
            self.shape_mean = self.points.mean(1, dtype=np.float64)  # (S, 3)
            self.shape_std = self.points.reshape(len(self.points), -1).std(1, dtype=np.float64)  # (S,)
            flat = np.flatnonzero(self.shape_std == 0)
            if len(flat):
                raise ValueError(f"{self.files[flat[0]]}: all points coincide, so per-shape normalisation divides "
                                 "by 0; fix the cloud or use normalization='global'")
        self.stats = self._global_stats(stats) if normalization == "global" else {
            "normalization": normalization, "definition": NORMALIZATION_DEFINITIONS[normalization]}

    def _global_stats(self, stats: dict[str, Any] | None) -> dict[str, Any]:
        if stats is not None:
            if stats.get("normalization") != "global" or len(stats.get("mean", ())) != 3 or not stats.get("std", 0) > 0:
                raise ValueError(f"stats must be a training set's global statistics {{'normalization': 'global', "
                                 f"'mean': [3 floats], 'std': float > 0, ...}}, got {stats!r}")
            return dict(stats)
        # Sums in float64, shape by shape, so no float64 copy of the whole set is made.
        s1, s2 = np.zeros(3), 0.0
        for cloud in self.points:
            s1 += cloud.sum(0, dtype=np.float64)
            s2 += float(np.square(cloud, dtype=np.float64).sum())
        n = self.points.shape[0] * self.points.shape[1]
        mean = s1 / n
        std = float(np.sqrt(max(s2 / (3 * n) - (s1.sum() / (3 * n)) ** 2, 0.0)))
        if not std > 0:
            raise ValueError(f"all training points of {self.categories} coincide (std 0); use normalization='none'")
        return {"normalization": "global", "definition": NORMALIZATION_DEFINITIONS["global"],
                "mean": mean.tolist(), "std": std, "num_shapes": len(self.points),
                "categories": self.categories, "split": self.split}

    def __len__(self) -> int:
        return len(self.points)

    def normalize(self, points: np.ndarray, indices: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Map clouds ``(..., N, 3)`` of this split from the stored frame to the normalised one."""
        mean, std = self._frame(points, indices)
        return ((np.asarray(points, dtype=np.float64) - mean) / std).astype(np.float32)

    def denormalize(self, points: Any, indices: np.ndarray | Sequence[int] | None = None) -> Any:
        """Map clouds ``(..., N, 3)`` (array or tensor) back to the stored frame.

        ``indices`` (one per cloud) are needed for ``"per-shape"`` only: cloud ``k`` is
        mapped with the statistics of this split's cloud ``indices[k]``.
        """
        mean, std = self._frame(points, indices)
        if isinstance(points, torch.Tensor):
            return points * torch.as_tensor(std, dtype=points.dtype, device=points.device) + torch.as_tensor(
                mean, dtype=points.dtype, device=points.device)
        return np.asarray(points) * std + mean

    def _frame(self, points: Any, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.normalization == "none":
            return np.zeros(3), np.ones(1)
        if self.normalization == "global":
            return np.asarray(self.stats["mean"]), np.asarray([self.stats["std"]])
        if indices is None:
            raise ValueError("per-shape normalisation maps each cloud with its own statistics: pass indices")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) != int(np.prod(np.shape(points)[:-2], dtype=np.int64)):
            raise ValueError(f"need one index per cloud: got {len(idx)} indices for clouds of shape {np.shape(points)}")
        lead = tuple(np.shape(points)[:-2])
        return (self.shape_mean[idx].reshape(*lead, 1, 3), self.shape_std[idx].reshape(*lead, 1, 1))

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = (item, 0) if not isinstance(item, tuple) else item
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clouds")
        index %= len(self)
        rng = np.random.default_rng([self.seed, int(epoch), index])
        pick = np.sort(rng.choice(TRAIN_POINTS, self.num_points, replace=False))
        pts = self.normalize(self.points[index, pick], None if self.normalization != "per-shape" else [index])
        return {"points": torch.from_numpy(pts), "label": torch.tensor(self.labels[index], dtype=torch.long)}

    def references(self, num_points: int | None = None, normalized: bool = False, seed: int = 0) -> np.ndarray:
        """The held-out last 5,000 points of every cloud, for evaluation.

        Args:
            num_points: None for all 5,000, else a random subset of that many per cloud
                (seeded by ``(seed, cloud index)``), e.g. 2048 to match samples for EMD.
            normalized: map them to the training frame (default: the stored frame, in
                which PointFlow, PVD and DiT-3D compute their metrics).
            seed: seeds the subsets.

        Shapes:
            returns ``(S, num_points or 5000, 3)`` float32
        """
        refs = self.points[:, TRAIN_POINTS:CLOUD_POINTS]
        if num_points is not None:
            _check_int(num_points, "num_points", 1, REFERENCE_POINTS)
            picks = [np.sort(np.random.default_rng([seed, i]).choice(REFERENCE_POINTS, num_points, replace=False))
                     for i in range(len(refs))]
            refs = np.stack([r[p] for r, p in zip(refs, picks)]) if len(refs) else refs[:, :num_points]
        if normalized:
            return self.normalize(refs, np.arange(len(refs)) if self.normalization == "per-shape" else None)
        return np.array(refs, dtype=np.float32)


class EpochDrawSampler(Sampler):
    """Yields ``(index, epoch)`` pairs, shuffled per epoch, so each epoch gets fresh, seeded draws.

    The epoch advances by one per pass, or follows :meth:`set_epoch` (which Lightning
    calls each epoch) once that is used. Order and draws depend on ``(seed, epoch)`` only.

    Example:
        >>> s = EpochDrawSampler(3, seed=0)
        >>> [e for _, e in s], [e for _, e in s]
        ([0, 0, 0], [1, 1, 1])
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.size, self.seed, self.shuffle = int(size), int(seed), shuffle
        self.epoch, self._explicit = 0, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit = int(epoch), True

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        if not self._explicit:
            self.epoch += 1
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle else range(self.size)
        return iter([(int(i), epoch) for i in order])

    def __len__(self) -> int:
        return self.size
