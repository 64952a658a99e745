"""Lightning data module serving crystal CSVs (CDVAE layout) as PyG mini-batches."""
from __future__ import annotations

import os
import warnings

import torch
from torch.utils.data import Dataset

from dit3d.data.crystals import SYMPREC, CrystalDataset, dev_split_files
from dit3d.data.datamodule import _STAGE_SPLITS, AtomsDataModule

__all__ = ["CrystalDataModule"]

#: environment variable naming the crystal data root when ``data_root`` is not given
DATA_ROOT_ENV = "DIT3D_CRYSTAL_DATA"


def _check_count(name: str, value: object, minimum: int) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise ValueError(f"{name} must be an int >= {minimum}" + (" or None" if name.endswith("subset") else "")
                         + f", got {value!r}")


def _split_files(data_root: str | None, preset: str | None, given: dict[str, str | list[str] | None],
                 val_fraction: float | None) -> tuple[dict[str, list[str]], float]:
    """The CSV files of each split (a preset's, then files given per split, relative to
    ``data_root``) and the fraction of the training files held out for validation (the
    preset's, 0 when validation files exist, or ``val_fraction``)."""
    files: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    fraction = 0.0
    if preset is not None:
        if data_root is None:
            raise ValueError(f"preset {preset!r} needs data_root (or ${DATA_ROOT_ENV}): the folder holding the "
                             f"CDVAE CSV folders, e.g. data_root='../shared/data/crystals'")
        from dit3d.data.crystals import DEV_SPLITS

        files = dev_split_files(preset, data_root)
        fraction = DEV_SPLITS[preset].val_fraction
    for split, paths in given.items():
        if paths is not None:
            files[split] = [p if os.path.isabs(p) or data_root is None else os.path.join(data_root, p)
                            for p in ([paths] if isinstance(paths, str) else paths)]
    if given["val"] is not None or files["val"]:
        fraction = 0.0
    if val_fraction is not None:
        fraction = val_fraction
    if not any(files.values()):
        raise ValueError("no crystal files: give preset= (with data_root) or train_files/val_files/test_files")
    if fraction > 0 and files["val"]:
        raise ValueError("give either validation files or val_fraction > 0, not both")
    return files, fraction


class CrystalDataModule(AtomsDataModule):
    """Crystal train / val / test loaders, from a named development split or explicit CSV files.

    Mirrors :class:`~dit3d.data.QM9DataModule`: batches are
    :class:`torch_geometric.data.Batch` objects in the shared molecule/crystal format (see
    :class:`~dit3d.data.CrystalDataset`), ready for
    :meth:`dit3d.tokenizers.atoms.Atoms.from_pyg`; training order is shuffled by a
    generator seeded with ``seed``; validation and test keep dataset order.

    Files: ``preset`` names a :data:`~dit3d.data.crystals.DEV_SPLITS` entry resolved under
    ``data_root`` (default ``$DIT3D_CRYSTAL_DATA``), e.g. ``preset="mp20-dev",
    data_root="../shared/data/crystals"``. ``train_files`` / ``val_files`` / ``test_files``
    replace the preset's lists (relative paths are taken under ``data_root`` when given).
    Several files in one split are combined and de-duplicated on ``material_id``.

    Disjointness: validation crystals whose ``material_id`` is in the training set are
    dropped (the count is in ``num_excluded`` of the dataset). Test crystals are never
    dropped (the evaluation set stays the published one); an overlap with training is
    reported in a warning. Without validation files, ``val_fraction`` of the training
    crystals are held out by a permutation seeded with ``split_seed``; the indices are in
    :attr:`split_indices` (positions in the combined training files).

    Args:
        data_root: folder the preset's (and relative) paths are under.
        preset: name of a development split, or None to give files explicitly.
        train_files, val_files, test_files: CSV paths overriding the preset's.
        root: cache directory (default: see :class:`~dit3d.data.CrystalDataset`).
        batch_size: crystals per batch.
        num_workers: loader worker processes (0 = load in the main process).
        train_subset, val_subset, test_subset: keep only the first ``n`` crystals of a split.
        val_fraction: hold-out fraction when no validation files are given (None: the preset's).
        split_seed: seed of the hold-out permutation.
        pin_memory: pin batches in page-locked memory for faster GPU transfer.
        seed: seed of the training shuffle.
        group_by_size: batch training crystals of similar atom counts together.
        symprec: space-group tolerance in Angstrom (see :data:`~dit3d.data.crystals.SYMPREC`).
        progress: tqdm bars while parsing (None: only on a terminal).

    Example:
        >>> dm = CrystalDataModule(data_root="../shared/data/crystals", preset="perov5-dev")  # doctest: +SKIP
        >>> dm.setup("fit"); next(iter(dm.train_dataloader())).num_graphs  # doctest: +SKIP
        64
    """

    def __init__(self, data_root: str | None = None, preset: str | None = None,
                 train_files: list[str] | None = None, val_files: list[str] | None = None,
                 test_files: list[str] | None = None, root: str | None = None, batch_size: int = 64,
                 num_workers: int = 0, train_subset: int | None = None, val_subset: int | None = None,
                 test_subset: int | None = None, val_fraction: float | None = None, split_seed: int = 0,
                 pin_memory: bool = False, seed: int = 0, group_by_size: bool = False,
                 symprec: float = SYMPREC, progress: bool | None = None) -> None:
        super().__init__()
        _check_count("batch_size", batch_size, 1)
        _check_count("num_workers", num_workers, 0)
        for name, value in (("train_subset", train_subset), ("val_subset", val_subset), ("test_subset", test_subset)):
            _check_count(name, value, 1)
        if val_fraction is not None and not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
        self.save_hyperparameters()
        self.files, self.val_fraction = _split_files(data_root or os.environ.get(DATA_ROOT_ENV) or None, preset,
                                                     {"train": train_files, "val": val_files, "test": test_files},
                                                     val_fraction)
        self.split_seed = split_seed
        self.root = root
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.seed, self.group_by_size = seed, group_by_size
        self.symprec, self.progress = symprec, progress
        self.subsets = {"train": train_subset, "val": val_subset, "test": test_subset}
        self.datasets: dict[str, Dataset] = {}
        self._full: CrystalDataset | None = None
        #: hold-out positions in the combined training files (``val_fraction > 0`` only)
        self.split_indices: dict[str, torch.Tensor] = {}

    def prepare_data(self) -> None:
        # Lightning runs this on one process only: build the caches there, not on every rank.
        for paths in self.files.values():
            if paths:
                CrystalDataset(paths, self.root, symprec=self.symprec, progress=self.progress)

    def _make(self, paths: list[str], **kw) -> CrystalDataset:
        return CrystalDataset(paths, self.root, symprec=self.symprec, progress=self.progress, **kw)

    def _cut(self, ds: Dataset, split: str) -> Dataset:
        n = self.subsets[split]
        if n is None:
            return ds
        if n > len(ds):
            raise ValueError(f"{split}_subset={n} exceeds the {len(ds)} crystals of the {split} split")
        return ds[:n]

    def _train_full(self) -> CrystalDataset:
        """All training crystals (before hold-out and subset), built once."""
        if self._full is None:
            self._full = self._make(self.files["train"])
        return self._full

    def _build(self, split: str) -> Dataset:
        if split in self.datasets:
            return self.datasets[split]
        if split in ("train", "val") and self.val_fraction > 0:
            if not self.files["train"]:
                raise ValueError("val_fraction needs training files to hold crystals out of")
            full = self._train_full()
            perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(self.split_seed))
            k = max(1, round(self.val_fraction * len(full)))
            if k >= len(full):
                raise ValueError(f"val_fraction={self.val_fraction} leaves no training crystals out of {len(full)}")
            self.split_indices = {"train": perm[k:], "val": perm[:k]}
            self.datasets["train"] = self._cut(full[self.split_indices["train"]], "train")
            self.datasets["val"] = self._cut(full[self.split_indices["val"]], "val")
            return self.datasets[split]
        if not self.files[split]:
            raise ValueError(f"no {split} files: give {split}_files=... or a preset that has a {split} split")
        if split == "train":
            ds = self._train_full()
        elif split == "val" and self.files["train"]:
            train_ids = [i for i in self._train_full().material_ids if i]
            ds = self._make(self.files["val"], exclude_ids=train_ids)
        else:
            ds = self._make(self.files[split])
        if split == "test" and self.files["train"]:
            train_ids = set(self._train_full().material_ids) - {""}
            overlap = sum(1 for i in ds.material_ids if i in train_ids)
            if overlap:
                warnings.warn(f"{overlap} test crystals share a material_id with the training set; "
                              f"metrics on them are not held-out numbers", stacklevel=2)
        self.datasets[split] = self._cut(ds, split)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage is not None and stage not in _STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {tuple(_STAGE_SPLITS)} or None")
        for split in (("train", "val", "test") if stage is None else _STAGE_SPLITS[stage]):
            if self.files[split] or (split == "val" and self.val_fraction > 0 and self.files["train"]):
                self._build(split)

    @property
    def train_dataset(self) -> Dataset:
        return self._build("train")

    @property
    def val_dataset(self) -> Dataset:
        return self._build("val")

    @property
    def test_dataset(self) -> Dataset:
        return self._build("test")

    def _dataset(self, split: str) -> Dataset:
        return self._build(split)
