r"""QM9 (Ramakrishnan et al. 2014) as all-atom 3D graphs, in the shared molecule/crystal format.

The molecules come from the CSV tables that the PyPI package ``qm9pack`` ships inside its
wheel (130,831 molecules with their B3LYP/6-31G(2df,p) geometries), so nothing is
downloaded. Molecules carry zero-filled crystal fields so that ADiT (Joshi et al. 2025)
can batch molecules and crystals through one model.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import os.path as osp
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.io import fs

__all__ = ["QM9", "qm9_smiles", "atom_count_histogram"]

SPLITS = ("train", "val", "test", "all")
SPLIT_SEED = 9
SPLIT_SIZES = {"train": 100_000, "val": 18_000}  # test takes the rest
# Bump whenever the processed layout changes, so stale caches are rebuilt, not misread.
FORMAT_VERSION = 1
_RAW_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_NODE_KEYS = ("atom_types", "pos", "frac_coords")
_GRAPH_KEYS = ("cell", "lengths", "angles", "dataset_idx", "spacegroup", "num_atoms", "qm9_index", "smiles")


class QM9Data(Data):
    """:class:`~torch_geometric.data.Data` whose ``qm9_index`` survives batching.

    PyG offsets every attribute whose name contains ``"index"`` by the node count when
    batching (it assumes edge indices), which would corrupt the molecule identifiers.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        return 0 if key == "qm9_index" else super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        return 0 if key == "qm9_index" else super().__cat_dim__(key, value, *args, **kwargs)


class QM9Arrays(NamedTuple):
    """Molecules as flat tensors: ``M`` molecules, their atoms concatenated in molecule order."""

    qm9_index: Tensor  # (M,) long
    num_atoms: Tensor  # (M,) long
    smiles: list[str]
    atom_types: Tensor  # (N_total,) long
    pos: Tensor  # (N_total, 3) float32

    def take(self, idx: Tensor) -> QM9Arrays:
        """Molecules ``idx`` (in that order), atoms gathered with them."""
        counts = self.num_atoms[idx]
        starts = (self.num_atoms.cumsum(0) - self.num_atoms)[idx]
        # Concatenated aranges start_i .. start_i + count_i without a Python loop.
        shift = torch.repeat_interleave(starts - (counts.cumsum(0) - counts), counts)
        atoms = shift + torch.arange(int(counts.sum()))
        return QM9Arrays(self.qm9_index[idx], counts, [self.smiles[i] for i in idx.tolist()],
                         self.atom_types[atoms], self.pos[atoms])


def default_root() -> str:
    """``$DIT3D_CACHE/qm9``, else ``$XDG_CACHE_HOME/dit3d/qm9``, else ``~/.cache/dit3d/qm9``."""
    cache = os.environ.get("DIT3D_CACHE")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME") or osp.join(osp.expanduser("~"), ".cache")
        cache = osp.join(xdg, "dit3d")
    return osp.join(osp.expanduser(cache), "qm9")


def _qm9pack_data_dir() -> Path | None:
    # find_spec locates the package without importing it: qm9pack's __init__ imports
    # pkg_resources, which recent setuptools no longer provides.
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _qm9pack_version() -> str:
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _element_table() -> dict[str, int]:
    # Built up front: RDKit's GetAtomicNumber on an unknown symbol dumps a C++ trace.
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    return {table.GetElementSymbol(z): z for z in range(1, 119)}


def read_qm9pack_csv(paths: Sequence[str | Path]) -> QM9Arrays:
    """Parse qm9pack's CSV tables, concatenated in the given order, into flat tensors.

    Vectorised: the per-molecule list strings are joined and parsed in one pass instead
    of one ``ast.literal_eval`` per row; all of QM9 takes about 3 s. Rows in error
    messages are 0-based over the concatenated tables.
    """
    cols = ["XYZ_file", "Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"]
    df = pd.concat([pd.read_csv(p, usecols=cols, dtype={"SMILES": str, "Elements": str, "XYZ_Ang": str},
                                keep_default_na=False) for p in paths], ignore_index=True)
    n_atoms = df["N_atoms"].to_numpy(np.int64, copy=True)

    def check(found: np.ndarray, expected: np.ndarray, what: str) -> None:
        bad = np.flatnonzero(found != expected)
        if bad.size:
            r = int(bad[0])
            raise ValueError(f"row {r} ({df['XYZ_file'][r]}) has {found[r]} {what}, expected {expected[r]} "
                             f"from N_atoms = {n_atoms[r]}; the qm9pack tables look corrupt, reinstall them "
                             f"with `pip install --force-reinstall qm9pack`")

    check(df["Elements"].str.count(",").to_numpy() + 1, n_atoms, "elements")
    check(df["XYZ_Ang"].str.count(",").to_numpy() + 1, 3 * n_atoms, "coordinate values")

    joined = ",".join(df["Elements"]).translate(str.maketrans("", "", "[]'\" "))
    symbols = np.array(joined.split(","))
    table = _element_table()
    unique, inverse = np.unique(symbols, return_inverse=True)
    unknown = [s for s in unique if s not in table]
    if unknown:
        atom = int(np.flatnonzero(symbols == unknown[0])[0])
        r = int(np.searchsorted(np.cumsum(n_atoms), atom, side="right"))
        raise ValueError(f"unknown element {str(unknown[0])!r} in row {r} ({df['XYZ_file'][r]}); "
                         f"the Elements column must hold element symbols like 'C' or 'H'")
    atom_types = np.array([table[s] for s in unique], dtype=np.int64)[inverse]

    coords = ",".join(df["XYZ_Ang"]).translate(str.maketrans("", "", "[] "))
    with warnings.catch_warnings():
        # np.fromstring only warns (and stops early) on a malformed number; make it raise.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            pos = np.fromstring(coords, sep=",")
        except (DeprecationWarning, ValueError) as err:
            raise ValueError(f"XYZ_Ang holds a value that is not a number: {err}") from None
    return QM9Arrays(qm9_index=torch.from_numpy(df["Index"].to_numpy(np.int64, copy=True)),
                     num_atoms=torch.from_numpy(n_atoms), smiles=df["SMILES"].tolist(),
                     atom_types=torch.from_numpy(atom_types),
                     pos=torch.from_numpy(pos.reshape(-1, 3)).float())


def collate_molecules(raw: QM9Arrays, cls: type[Data] = Data) -> tuple[Data, dict[str, Tensor] | None]:
    """Build the :class:`InMemoryDataset` storage ``(data, slices)`` directly from flat tensors.

    Gives what ``InMemoryDataset.collate`` gives for the per-molecule objects, without
    creating 130k :class:`Data` objects first (which alone takes longer than parsing).
    """
    M, N = raw.num_atoms.numel(), raw.atom_types.numel()
    node_slices = torch.cat([raw.num_atoms.new_zeros(1), raw.num_atoms.cumsum(0)])
    graph_slices = torch.arange(M + 1)
    zeros_long = torch.zeros(M, dtype=torch.long)
    data = cls(atom_types=raw.atom_types, pos=raw.pos, frac_coords=torch.zeros(N, 3),
               cell=torch.zeros(M, 3, 3), lengths=torch.zeros(M, 3), angles=torch.zeros(M, 3),
               dataset_idx=zeros_long, spacegroup=zeros_long.clone(), num_atoms=raw.num_atoms,
               qm9_index=raw.qm9_index, smiles=list(raw.smiles))
    if M == 1:  # PyG stores a lone example as itself, without slices
        data.smiles = raw.smiles[0]
        return data, None
    slices = {k: node_slices for k in _NODE_KEYS} | {k: graph_slices for k in _GRAPH_KEYS}
    return data, slices


def qm9_split(num_molecules: int, seed: int = SPLIT_SEED) -> dict[str, Tensor]:
    """ADiT's QM9 split: one seeded permutation, cut into train / val / rest."""
    n_train, n_val = SPLIT_SIZES["train"], SPLIT_SIZES["val"]
    if num_molecules <= n_train + n_val:
        raise ValueError(f"the QM9 split needs more than {n_train + n_val} molecules, the source has {num_molecules}")
    perm = torch.randperm(num_molecules, generator=torch.Generator().manual_seed(seed))
    return {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}


def _atomic_save(obj: Any, path: str) -> None:
    # Write then rename: an interrupted run never leaves a truncated file under the final name.
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fs.torch_save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _stale_reason(split_file: str) -> str | None:
    """Why an existing cache must be rebuilt, or None when it is current (or absent)."""
    if not osp.exists(split_file):
        return None
    try:
        protocol = torch.load(split_file, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file means "rebuild"
        return f"{split_file} is unreadable ({type(err).__name__}: {err})"
    if protocol.get("format_version") != FORMAT_VERSION:
        return f"cache format {protocol.get('format_version')} differs from the current {FORMAT_VERSION}"
    sizes = protocol.get("sizes", {})
    if protocol.get("seed") != SPLIT_SEED or any(sizes.get(k) != v for k, v in SPLIT_SIZES.items()):
        return "the cached split protocol differs from the current one"
    installed = _qm9pack_version()
    if installed != "unknown" and protocol.get("source_version") != installed:
        return f"it was built from qm9pack {protocol.get('source_version')}, installed is {installed}"
    return None


class QM9(InMemoryDataset):
    r"""QM9 molecules as all-atom 3D graphs for ADiT, hydrogens included.

    Each molecule is a :class:`QM9Data` (a :class:`~torch_geometric.data.Data`) with
    ``atom_types`` (atomic numbers) and ``pos`` (Angstrom, as in the source, *not*
    centred: centring is the model's job), plus the crystal fields of the shared
    molecule/crystal representation, zero-filled: ``frac_coords``, ``cell``, ``lengths``,
    ``angles``, ``spacegroup`` (0 = none) and ``dataset_idx`` (0 = molecule, 1 = crystal).
    ``smiles`` is QM9's SMILES column and ``qm9_index`` the QM9 ``Index`` (1..133885).

    The source is the ``qm9pack`` wheel (130,831 molecules), read locally: nothing is
    downloaded. Its three CSV parts are concatenated in order; "row" below means a
    position in that concatenation (rows are in ascending QM9 ``Index``).

    **Split** (as in ADiT):
    ``perm = torch.randperm(130831, generator=torch.Generator().manual_seed(9))``;
    ``train = perm[:100000]``, ``val = perm[100000:118000]``, ``test = perm[118000:]``
    (12,831). The indices are qm9pack rows, and each split keeps permutation order.
    ``split="all"`` gives every molecule in row order.

    **Cache**: parsing takes seconds and happens once; ``root/processed`` then holds
    ``train.pt``, ``val.pt``, ``test.pt``, ``all.pt`` and ``split.pt`` (the split indices and
    the protocol: seed, sizes, source version, format version). Files are written to a
    temporary name and renamed, so an interrupted run never leaves a truncated cache. A
    cache built by another format version or qm9pack version is rebuilt automatically.

    Args:
        root: cache directory; default ``$DIT3D_CACHE/qm9``, else
            ``$XDG_CACHE_HOME/dit3d/qm9``, else ``~/.cache/dit3d/qm9``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        subset: keep only the first ``subset`` molecules of the split (for tests and
            development); sliced after loading, so it shares the cache.
        force_reload: rebuild the cache even when it is current.
        transform: applied to each molecule on access (e.g. random rotations).

    Shapes:
        per molecule with ``N`` atoms: atom_types ``(N,)`` long; pos, frac_coords
        ``(N, 3)`` float32; cell ``(1, 3, 3)``; lengths, angles ``(1, 3)``; dataset_idx,
        spacegroup, num_atoms, qm9_index ``(1,)`` long. Batched, the ``(1, ...)`` fields
        stack to ``(B, ...)``.

    Example:
        >>> ds = QM9(split="val", subset=8)  # doctest: +SKIP
        >>> ds[0].atom_types.shape, ds.split_indices.shape  # doctest: +SKIP
    """

    def __init__(self, root: str | None = None, split: str = "train", subset: int | None = None,
                 force_reload: bool = False, transform: Callable[[Data], Data] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if subset is not None and (not isinstance(subset, int) or isinstance(subset, bool) or subset <= 0):
            raise ValueError(f"subset must be a positive int (or None for the whole split), got {subset!r}")
        root = osp.expanduser(root) if root else default_root()
        stale = None if force_reload else _stale_reason(osp.join(root, "processed", "split.pt"))
        if stale is not None:
            warnings.warn(f"rebuilding the QM9 cache in {root}: {stale}", stacklevel=2)
            force_reload = True
        self.split = split
        super().__init__(root, transform=transform, force_reload=force_reload)

        self.protocol: dict[str, Any] = torch.load(self.processed_paths[-1], weights_only=True)
        self.load(self.processed_paths[SPLITS.index(split)])
        indices = (torch.arange(self.protocol["num_molecules"]) if split == "all"
                   else self.protocol["indices"][split])
        total = len(self)
        if subset is not None and subset > total:
            raise ValueError(f"subset={subset} exceeds the {total} molecules of split {split!r}")
        k = total if subset is None else subset
        d = self._data
        end = int(self.slices["pos"][k])
        # Re-collate as QM9Data (so qm9_index is not offset when batching) and cut to k.
        self.data, self.slices = collate_molecules(
            QM9Arrays(d.qm9_index[:k], d.num_atoms[:k], d.smiles[:k], d.atom_types[:end], d.pos[:end]),
            cls=QM9Data)
        self.split_indices: Tensor = indices[:k]  # qm9pack rows of the molecules, in dataset order

    @property
    def raw_dir(self) -> str:
        pkg = _qm9pack_data_dir()
        return str(pkg) if pkg is not None else osp.join(self.root, "raw")

    @property
    def raw_file_names(self) -> list[str]:
        return list(_RAW_FILES)

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{s}.pt" for s in SPLITS] + ["split.pt"]

    @property
    def smiles(self) -> list[str]:
        """SMILES of the molecules, in dataset order."""
        smiles = self._data.smiles
        if isinstance(smiles, str):  # a one-molecule dataset stores the molecule itself
            return [smiles]
        return list(smiles) if self._indices is None else [smiles[i] for i in self.indices()]

    def download(self) -> None:
        # PyG checks the source files before the cache; a complete cache needs no source.
        if not self.force_reload and all(osp.exists(p) for p in self.processed_paths):
            return
        raise FileNotFoundError(
            f"QM9 source tables {list(_RAW_FILES)} not found in {self.raw_dir}. dit3d reads QM9 from the "
            f"qm9pack wheel and downloads nothing: `pip install qm9pack`, or copy qm9pack's data/*.csv "
            f"into {osp.join(self.root, 'raw')}")

    def process(self) -> None:
        raw = read_qm9pack_csv(self.raw_paths)
        M = raw.num_atoms.numel()
        splits = qm9_split(M)
        for split, path in zip(SPLITS, self.processed_paths):
            data, slices = collate_molecules(raw if split == "all" else raw.take(splits[split]))
            _atomic_save((data.to_dict(), slices, Data), path)
        protocol = {"format_version": FORMAT_VERSION, "source": "qm9pack", "source_version": _qm9pack_version(),
                    "num_molecules": M, "seed": SPLIT_SEED, "sizes": {k: v.numel() for k, v in splits.items()},
                    "indices": splits}
        _atomic_save(protocol, self.processed_paths[-1])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, split={self.split!r})"


def qm9_smiles(split: str = "train", root: str | None = None) -> list[str]:
    """SMILES of a QM9 split, e.g. the training set for the novelty metric.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        root: cache directory, as for :class:`QM9`.
    """
    return QM9(root=root, split=split).smiles


def _storage_with(dataset: Sequence[Data], key: str) -> Data | None:
    """An :class:`InMemoryDataset`'s collated storage if it holds ``key``, else None."""
    storage = getattr(dataset, "_data", None) if isinstance(dataset, InMemoryDataset) else None
    return storage if isinstance(storage, Data) and key in storage else None


def _stored_rows(dataset: InMemoryDataset) -> Tensor:
    """``(M,)`` indices of the stored systems a (possibly sliced) dataset view holds."""
    return torch.as_tensor(list(dataset.indices()), dtype=torch.long)


def graph_values(dataset: Sequence[Data], key: str) -> Tensor:
    """A per-system scalar field (``num_atoms``, ``dataset_idx``...), ``(M,)``, in dataset
    order. Reads an :class:`InMemoryDataset`'s storage without materialising the systems;
    any other sequence of :class:`~torch_geometric.data.Data` is read one by one. A dataset
    with its own ``graph_values(key)`` method (e.g. :class:`~dit3d.data.joint.JointDataset`)
    answers for itself."""
    if callable(getattr(dataset, "graph_values", None)):
        return dataset.graph_values(key)
    storage = _storage_with(dataset, key)
    if storage is not None:
        values = storage[key].view(-1)
        return values if dataset._indices is None else values[_stored_rows(dataset)]
    if key == "num_atoms":
        return torch.tensor([int(d.num_nodes) for d in dataset], dtype=torch.long)
    return torch.cat([d[key].view(-1) for d in dataset])


def element_counts(dataset: Sequence[Data], num_types: int) -> Tensor:
    """Atoms of each element per system, ``(M, num_types)`` long (column ``z`` counts atomic
    number ``z``), in dataset order: every system's composition. Reads an
    :class:`InMemoryDataset`'s storage without materialising the systems; a dataset with its
    own ``element_counts(num_types)`` method answers for itself; any other sequence is read
    one by one.

    Raises:
        ValueError: an atomic number outside ``0..num_types - 1``.
    """
    if callable(getattr(dataset, "element_counts", None)):
        return dataset.element_counts(num_types)
    storage = _storage_with(dataset, "atom_types")
    if storage is not None and dataset.slices is not None:
        types, sizes = storage.atom_types.long(), dataset.slices["atom_types"].diff()
        rows = _stored_rows(dataset)
    else:
        parts = [d.atom_types.long().view(-1) for d in dataset]
        types = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
        sizes = torch.tensor([len(p) for p in parts], dtype=torch.long)
        rows = torch.arange(len(parts))
    if types.numel() and not 0 <= int(types.min()) <= int(types.max()) < num_types:
        raise ValueError(f"atomic numbers {int(types.min())}..{int(types.max())} do not fit {num_types} element "
                         "columns; raise num_types")
    owner = torch.repeat_interleave(torch.arange(len(sizes)), sizes)  # (atoms,) system of each atom
    table = torch.zeros(len(sizes), num_types, dtype=torch.long)
    table.index_put_((owner, types), torch.ones_like(types), accumulate=True)
    return table[rows]


def atom_counts(dataset: Sequence[Data]) -> Tensor:
    """Atoms per molecule, ``(M,)`` long, in dataset order (see :func:`graph_values`)."""
    return graph_values(dataset, "num_atoms")


def atom_count_histogram(dataset: Sequence[Data]) -> Tensor:
    """Number of molecules per atom count: ``hist[n]`` molecules have ``n`` atoms.

    Used to sample molecule sizes at generation time.

    Args:
        dataset: a :class:`QM9` (or any dataset / list of ``Data``).

    Shapes:
        output: ``(max_atoms + 1,)`` long.

    Example:
        >>> mols = [Data(pos=torch.zeros(n, 3)) for n in (3, 5, 5)]
        >>> atom_count_histogram(mols).tolist()
        [0, 0, 0, 1, 0, 2]
    """
    if len(dataset) == 0:
        raise ValueError("atom_count_histogram got an empty dataset; it needs at least one molecule")
    return torch.bincount(atom_counts(dataset))
