r"""Joint molecule + crystal training data for ADiT: QM9 and a crystal set mixed in every batch.

ADiT (Joshi et al. 2025) trains one autoencoder and one latent DiT on molecules and
periodic crystals together. :class:`JointDataModule` serves that mix: each training batch
holds a fixed number of crystals, ``round(crystal_fraction * batch_size)``, and
molecules for the rest (a *per-batch* ratio, not alternation between single-kind
batches), every system reduced to :func:`~dit3d.data.crystals.shared_fields` so that the
two kinds collate into one PyG batch.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from dit3d.data.crystals import shared_fields
from dit3d.data.datamodule import _STAGE_SPLITS, ResumableGraphLoader
from dit3d.data.qm9 import element_counts, graph_values

__all__ = ["JointDataModule", "JointDataset", "MixedBatchSampler"]

#: ``dataset_idx`` of each kind, in the order :class:`JointDataModule` lists its parts
KINDS = {"molecule": 0, "crystal": 1}


class JointDataset(Dataset):
    """Several datasets as one: indices run through the parts in order, and every item
    is reduced to the fields molecules and crystals share (:func:`shared_fields`).

    Args:
        parts: the datasets (e.g. QM9 train, crystal train).

    Example:
        >>> from torch_geometric.data import Data
        >>> def system(kind):
        ...     return Data(atom_types=torch.tensor([6]), pos=torch.zeros(1, 3), frac_coords=torch.zeros(1, 3),
        ...                 cell=torch.zeros(1, 3, 3), lengths=torch.zeros(1, 3), angles=torch.zeros(1, 3),
        ...                 dataset_idx=torch.tensor([kind]), spacegroup=torch.tensor([0]),
        ...                 num_atoms=torch.tensor([1]), smiles="C")
        >>> ds = JointDataset([[system(0)] * 3, [system(1)] * 2])
        >>> len(ds), ds.ranges, ds.graph_values("dataset_idx").tolist()
        (5, [(0, 3), (3, 5)], [0, 0, 0, 1, 1])
        >>> ds.element_counts(7)[:, 6].tolist()  # one carbon each
        [1, 1, 1, 1, 1]
    """

    def __init__(self, parts: Sequence[Dataset]) -> None:
        if not parts:
            raise ValueError("JointDataset needs at least one dataset")
        self.parts = list(parts)
        sizes = [len(p) for p in self.parts]
        self.offsets = [0] + list(torch.tensor(sizes).cumsum(0).tolist())

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """``[start, stop)`` of each part's indices."""
        return [(self.offsets[i], self.offsets[i + 1]) for i in range(len(self.parts))]

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> Data:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a JointDataset of {len(self)} systems")
        part = bisect.bisect_right(self.offsets, index) - 1
        return shared_fields(self.parts[part][index - self.offsets[part]])

    def graph_values(self, key: str) -> Tensor:
        """A per-system field (``num_atoms``, ``dataset_idx``...) of all parts, ``(M,)``, in
        index order, read from the parts' storage (see :func:`dit3d.data.qm9.graph_values`)."""
        return torch.cat([graph_values(p, key).view(-1) for p in self.parts])

    def element_counts(self, num_types: int) -> Tensor:
        """Every system's composition, ``(M, num_types)``, in index order (see
        :func:`dit3d.data.qm9.element_counts`)."""
        return torch.cat([element_counts(p, num_types) for p in self.parts])


class MixedBatchSampler(Sampler[list[int]]):
    """Batches with a fixed number of items from each of several sources.

    The sources are consecutive index ranges of one dataset (:class:`JointDataset`), of
    sizes ``sizes``; every batch holds ``per_batch[k]`` distinct items of source ``k``,
    sources in order. Each source is read in a seeded random order; when fewer than
    ``per_batch[k]`` items are left, it starts over in a fresh order (the leftovers are
    skipped this round, so no batch repeats an item). An epoch is ``num_batches`` batches,
    by default :math:`\\max_k \\lfloor |S_k| / n_k \\rfloor`: the source that takes the most
    batches is read once, the others cycle. Epoch ``e`` is seeded with ``seed + e`` so runs
    repeat.

    Args:
        sizes: items per source.
        per_batch: items of each source in a batch (0: the source is not drawn from).
        num_batches: batches per epoch (None: see above).
        seed: base seed.

    Example:
        >>> s = MixedBatchSampler([6, 2], [2, 1], seed=0)
        >>> len(s), [sum(i >= 6 for i in b) for b in s]
        (3, [1, 1, 1])
    """

    def __init__(self, sizes: Sequence[int], per_batch: Sequence[int], num_batches: int | None = None,
                 seed: int = 0) -> None:
        if len(sizes) != len(per_batch) or not sizes:
            raise ValueError(f"sizes and per_batch need one entry per source, got {list(sizes)} and {list(per_batch)}")
        if any(n < 0 for n in per_batch) or sum(per_batch) == 0:
            raise ValueError(f"per_batch must be >= 0 with a positive sum, got {list(per_batch)}")
        for k, (size, n) in enumerate(zip(sizes, per_batch)):
            if n > size:
                raise ValueError(f"source {k} has {size} items but {n} are wanted in every batch; lower the batch "
                                 f"size or the crystal fraction, or give that source more data")
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"num_batches must be >= 1 or None, got {num_batches!r}")
        self.sizes, self.per_batch, self.seed = [int(s) for s in sizes], [int(n) for n in per_batch], seed
        self.offsets = [0] + list(torch.tensor(self.sizes).cumsum(0).tolist())
        self.num_batches = num_batches or max(s // n for s, n in zip(self.sizes, self.per_batch) if n > 0)
        self.epoch, self._explicit = 0, False

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch`` next (Lightning calls this before every epoch); without
        calls, each pass advances the epoch by one."""
        self.epoch, self._explicit = int(epoch), True

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if not self._explicit:
            self.epoch += 1
        orders: list[list[int]] = [[] for _ in self.sizes]
        for _ in range(self.num_batches):
            batch: list[int] = []
            for k, n in enumerate(self.per_batch):
                if n == 0:
                    continue
                if len(orders[k]) < n:
                    orders[k] = (torch.randperm(self.sizes[k], generator=g) + self.offsets[k]).tolist()
                batch += orders[k][:n]
                del orders[k][:n]
            yield batch


def crystal_count(batch_size: int, crystal_fraction: float) -> int:
    """Crystals per batch: ``round(crystal_fraction * batch_size)``, kept in
    ``[1, batch_size - 1]`` when the fraction is strictly between 0 and 1 (both kinds in
    every batch).

    Example:
        >>> crystal_count(64, 0.5), crystal_count(4, 0.01), crystal_count(4, 1.0)
        (32, 1, 4)
    """
    n = round(crystal_fraction * batch_size)
    if 0.0 < crystal_fraction < 1.0:
        n = min(max(n, 1), batch_size - 1)
    return n


class JointDataModule(LightningDataModule):
    """QM9 molecules and crystals (CDVAE CSVs) in mixed training batches, with a
    validation (and test) loader per kind.

    Training: every batch of ``batch_size`` systems holds
    :func:`crystal_count` ``(batch_size, crystal_fraction)`` crystals and molecules for the
    rest, drawn by :class:`MixedBatchSampler` (seeded with ``seed + epoch``). The ratio is
    per batch (not alternation of single-kind batches): each optimiser step sees both
    kinds. ``crystal_fraction`` 0 or 1 trains on one kind only. An epoch reads the source
    that needs the most batches once; the other cycles (``batches_per_epoch`` overrides).

    Validation / test: one loader per kind, molecules first (:attr:`val_kinds`), each from
    its own data module in dataset order; Lightning passes ``dataloader_idx``, and the ADiT
    modules log molecule metrics as ``val/<metric>`` and crystal metrics as
    ``val/crystal/<metric>``. A crystal set without a validation split (no val files and no
    ``val_fraction``) gets no crystal validation loader.

    The two sources are configured by the arguments of their own data modules:
    ``qm9`` for :class:`~dit3d.data.QM9DataModule` (``root``, ``train_subset``,
    ``val_subset``, ...) and ``crystals`` for :class:`~dit3d.data.CrystalDataModule`
    (``data_root``, ``preset``, ``train_files``, ``val_subset``, ...). Their ``batch_size``
    (default: this module's) sets the size of their validation/test batches; their
    shuffling options are not used for training. Relative ``data_root`` paths are taken
    from the working directory, e.g. ``crystals={"data_root": "../shared/data/crystals",
    "preset": "mp20-dev"}`` from this repository's root.

    Args:
        qm9: keyword arguments of the QM9 data module (None: its defaults), used when
            ``crystal_fraction < 1`` or when given.
        crystals: keyword arguments of the crystal data module; required when
            ``crystal_fraction > 0``.
        batch_size: systems per training batch.
        crystal_fraction: share of crystals in each training batch, in [0, 1].
        batches_per_epoch: training batches per epoch (None: see above).
        seed: seed of the training draw.
        num_workers: training loader worker processes.
        pin_memory: pin training batches in page-locked memory.

    Example:
        >>> dm = JointDataModule(crystals={"data_root": "../shared/data/crystals", "preset": "mp20-dev"},
        ...                      qm9={"val_subset": 1280}, batch_size=64, crystal_fraction=0.5)  # doctest: +SKIP
        >>> dm.setup("fit"); b = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        >>> int(b.dataset_idx.sum()), b.num_graphs  # doctest: +SKIP
        (32, 64)
    """

    def __init__(self, qm9: dict[str, Any] | None = None, crystals: dict[str, Any] | None = None,
                 batch_size: int = 64, crystal_fraction: float = 0.5, batches_per_epoch: int | None = None,
                 seed: int = 0, num_workers: int = 0, pin_memory: bool = False) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(crystal_fraction, (int, float)) or not 0.0 <= crystal_fraction <= 1.0:
            raise ValueError(f"crystal_fraction must lie in [0, 1] (the share of crystals in each batch), "
                             f"got {crystal_fraction!r}")
        if 0.0 < crystal_fraction < 1.0 and batch_size < 2:
            raise ValueError(f"mixing molecules and crystals needs batch_size >= 2, got {batch_size}")
        if batches_per_epoch is not None and (not isinstance(batches_per_epoch, int) or batches_per_epoch < 1):
            raise ValueError(f"batches_per_epoch must be a positive int or None, got {batches_per_epoch!r}")
        n_xtal = crystal_count(batch_size, crystal_fraction)
        if n_xtal > 0 and crystals is None:
            raise ValueError("crystal_fraction > 0 needs crystals={...}: the arguments of CrystalDataModule, e.g. "
                             "{'data_root': '../shared/data/crystals', 'preset': 'mp20-dev'}")
        self.save_hyperparameters()
        from dit3d.data.crystal_datamodule import CrystalDataModule
        from dit3d.data.datamodule import QM9DataModule

        self.batch_size, self.seed = batch_size, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.batches_per_epoch = batches_per_epoch
        #: systems of each kind in a training batch
        self.per_batch = {"molecule": batch_size - n_xtal, "crystal": n_xtal}
        self.modules: dict[str, LightningDataModule] = {}
        if qm9 is not None or self.per_batch["molecule"] > 0:
            self.modules["molecule"] = QM9DataModule(**({"batch_size": batch_size} | dict(qm9 or {})))
        if crystals is not None:
            self.modules["crystal"] = CrystalDataModule(**({"batch_size": batch_size} | dict(crystals)))
        self._train: JointDataset | None = None

    # ----------------------------------------------------------------- set-up
    def prepare_data(self) -> None:
        for dm in self.modules.values():
            dm.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if stage is not None and stage not in _STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {tuple(_STAGE_SPLITS)} or None")
        for dm in self.modules.values():
            dm.setup(stage)

    @property
    def train_kinds(self) -> list[str]:
        """Kinds drawn in training batches, in batch order."""
        return [k for k in KINDS if self.per_batch[k] > 0]

    @property
    def train_dataset(self) -> JointDataset:
        """The training systems of both kinds (molecules first), reduced to shared fields."""
        if self._train is None:
            self._train = JointDataset([self.modules[k].train_dataset for k in self.train_kinds])
        return self._train

    def _has(self, kind: str, split: str) -> bool:
        dm = self.modules.get(kind)
        if dm is None:
            return False
        if kind == "crystal":
            return bool(dm.files[split]) or (split == "val" and dm.val_fraction > 0 and bool(dm.files["train"]))
        return True

    @property
    def val_kinds(self) -> list[str]:
        """Kinds of the validation loaders, in loader order (``dataloader_idx``)."""
        return [k for k in KINDS if self._has(k, "val")]

    @property
    def test_kinds(self) -> list[str]:
        """Kinds of the test loaders, in loader order."""
        return [k for k in KINDS if self._has(k, "test")]

    # ---------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset
        sizes = [e - s for s, e in ds.ranges]
        sampler = MixedBatchSampler(sizes, [self.per_batch[k] for k in self.train_kinds], self.batches_per_epoch,
                                    seed=self.seed)
        if self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        # resumable: a run resumed mid-epoch skips the batches its checkpoint had served
        return ResumableGraphLoader(ds, batch_sampler=sampler, num_workers=self.num_workers,
                                    pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> list[DataLoader]:
        kinds = self.val_kinds
        if not kinds:
            raise ValueError("no validation data: give the QM9 or crystal data module a validation split")
        return [self.modules[k].val_dataloader() for k in kinds]

    def test_dataloader(self) -> list[DataLoader]:
        kinds = self.test_kinds
        if not kinds:
            raise ValueError("no test data: give the QM9 or crystal data module a test split")
        return [self.modules[k].test_dataloader() for k in kinds]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()

    @property
    def val_dataset(self) -> Dataset:
        """Validation systems of both kinds (molecules first), reduced to shared fields."""
        return JointDataset([self.modules[k].val_dataset for k in self.val_kinds])

    @property
    def test_dataset(self) -> Dataset:
        """Test systems of both kinds (molecules first), reduced to shared fields."""
        return JointDataset([self.modules[k].test_dataset for k in self.test_kinds])
