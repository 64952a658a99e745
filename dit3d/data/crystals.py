r"""Crystals from CDVAE-layout CSV files (MP-20, Perov-5, Carbon-24, MPTS-52), in the shared
molecule/crystal format of ADiT (Joshi et al. 2025).

The CDVAE layout (Xie et al. 2022) is one row per structure with a ``cif`` column holding a
P1 CIF; other columns vary by set (``material_id``, ``pretty_formula``, properties...).
Plain ``.csv`` and compressed ``.csv.gz`` are read alike. Each row is parsed with pymatgen,
Niggli-reduced, and its lattice rebuilt from the six parameters with
``Lattice.from_parameters`` (CDVAE's ``build_crystal`` with ``niggli=True,
primitive=False``), so that equal lattices have the same orientation.

Nothing is downloaded and no location is built in: the files come from the caller. For
development the project stages official pieces of these sets (e.g. in
``../shared/data/crystals``); :data:`DEV_SPLITS` names documented splits of them relative to
a root the caller gives.
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset
from tqdm.auto import tqdm

from dit3d.data.qm9 import _atomic_save, default_root as _qm9_default_root

__all__ = ["CrystalDataset", "CrystalSplit", "DEV_SPLITS", "SYMPREC", "combine_crystal_csvs", "dev_split_files",
           "parse_crystal_csv", "read_crystal_csv", "shared_fields"]

PathLike = str | os.PathLike

#: ``dataset_idx`` of crystals; equals :data:`dit3d.tokenizers.atoms.CRYSTAL` (0 = molecule)
CRYSTAL = 1
#: pymatgen ``SpacegroupAnalyzer`` distance tolerance (Angstrom) for the stored space group:
#: DiffCSP's data configs (``conf/data/mp_20.yaml`` etc., ``tolerance: 0.1``) pass 0.1 as
#: ``symprec``; it is also the tolerance of the Materials Project's own ``spacegroup.number``.
SYMPREC = 0.1
#: pymatgen's default angle tolerance (degrees), kept
ANGLE_TOLERANCE = 5.0
# Bump whenever the processed layout changes, so stale caches are rebuilt, not misread.
FORMAT_VERSION = 1
#: the fields molecules (:class:`~dit3d.data.QM9`) and crystals share; see :func:`shared_fields`
SHARED_KEYS = ("atom_types", "pos", "frac_coords", "cell", "lengths", "angles", "dataset_idx", "spacegroup",
               "num_atoms")
_NODE_KEYS = ("atom_types", "pos", "frac_coords")
_GRAPH_KEYS = ("cell", "lengths", "angles", "dataset_idx", "spacegroup", "num_atoms", "csv_file", "csv_row",
               "material_id", "formula")


def default_root() -> str:
    """``$DIT3D_CACHE/crystals``, else ``$XDG_CACHE_HOME/dit3d/crystals``, else ``~/.cache/dit3d/crystals``."""
    return osp.join(osp.dirname(_qm9_default_root()), "crystals")  # the QM9 cache's sibling


# --------------------------------------------------------------------------- CSV reading
def read_crystal_csv(path: PathLike) -> pd.DataFrame:
    """A CDVAE-layout CSV (plain or ``.csv.gz``) as strings, empty cells as ``""``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: pandas cannot read it, or it has no ``cif`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"crystal CSV {path} does not exist; pass the path of a CDVAE-layout CSV "
                                f"(e.g. <root>/perov_5/val.csv)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:  # noqa: BLE001 - pandas raises many types on bad files
        raise ValueError(f"{path}: cannot read as CSV ({type(err).__name__}: {err})") from None
    if "cif" not in df.columns:
        raise ValueError(f"{path}: no 'cif' column (columns: {list(df.columns)}); a CDVAE-layout CSV has one "
                         f"row per structure and its CIF text in a column named 'cif'")
    return df


def combine_crystal_csvs(paths: PathLike | Sequence[PathLike], dedup: bool = True) -> pd.DataFrame:
    """Rows of several CDVAE-layout CSVs, concatenated in order, duplicates on ``material_id`` dropped.

    Adds ``csv_file`` (the path) and ``csv_row`` (0-based data row in that file) columns.
    The first occurrence of a ``material_id`` is kept; rows with an empty or missing
    ``material_id`` are never treated as duplicates. ``df.attrs["duplicates"]`` holds the
    number of rows dropped (e.g. MP-20 pilot val and biternary val share 796 ids).

    Args:
        paths: one CSV path or a sequence of them.
        dedup: drop repeated ``material_id`` s.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    frames = []
    for p in paths:
        df = read_crystal_csv(p)
        df.insert(0, "csv_row", np.arange(len(df)))
        df.insert(0, "csv_file", str(p))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["csv_file", "csv_row", "cif"])
    n = len(out)
    if dedup and "material_id" in out.columns:
        ids = out["material_id"].fillna("").astype(str)
        out = out[(ids == "") | ~ids.duplicated(keep="first")].reset_index(drop=True)
    out.attrs["duplicates"] = n - len(out)
    return out


# ---------------------------------------------------------------------------- parsing
class CrystalArrays(NamedTuple):
    """Crystals as flat tensors: ``M`` crystals, their atoms concatenated in crystal order.

    Shapes:
        num_atoms, spacegroup, csv_file, csv_row: ``(M,)`` long; atom_types ``(N_total,)``
        long; frac_coords, pos ``(N_total, 3)`` float32; cell ``(M, 3, 3)``; lengths,
        angles ``(M, 3)`` float32.
    """

    num_atoms: Tensor
    atom_types: Tensor
    frac_coords: Tensor
    pos: Tensor
    cell: Tensor
    lengths: Tensor
    angles: Tensor
    spacegroup: Tensor
    csv_file: Tensor
    csv_row: Tensor
    material_id: list[str]
    formula: list[str]

    def take(self, idx: Tensor) -> CrystalArrays:
        """Crystals ``idx`` (in that order), atoms gathered with them."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        counts = self.num_atoms[idx]
        starts = (self.num_atoms.cumsum(0) - self.num_atoms)[idx]
        shift = torch.repeat_interleave(starts - (counts.cumsum(0) - counts), counts)
        atoms = shift + torch.arange(int(counts.sum()))
        rows = idx.tolist()
        return CrystalArrays(counts, self.atom_types[atoms], self.frac_coords[atoms], self.pos[atoms],
                             self.cell[idx], self.lengths[idx], self.angles[idx], self.spacegroup[idx],
                             self.csv_file[idx], self.csv_row[idx], [self.material_id[i] for i in rows],
                             [self.formula[i] for i in rows])

    @classmethod
    def concat(cls, parts: Sequence[CrystalArrays]) -> CrystalArrays:
        """Concatenation in order."""
        return cls(*[sum((list(p[k]) for p in parts), []) if isinstance(parts[0][k], list)
                     else torch.cat([p[k] for p in parts]) for k in range(len(cls._fields))])

    def to_dict(self) -> dict[str, Any]:
        return dict(self._asdict())


def _empty_arrays() -> CrystalArrays:
    z = torch.zeros(0, dtype=torch.long)
    f = torch.zeros(0, 3)
    return CrystalArrays(z, z, f, f, torch.zeros(0, 3, 3), f, f, z, z, z, [], [])


def crystal_fields(structure, niggli: bool = True) -> dict[str, Any]:
    """Shared-representation fields of one structure, after CDVAE's canonicalisation.

    Niggli reduction (if ``niggli``), lattice rebuilt with ``Lattice.from_parameters``, fractional
    coordinates wrapped to [0, 1) *in float32* (so a float64 0.99999999 that rounds to 1.0
    becomes 0.0), Cartesian ``pos = frac @ cell`` from those float32 values.

    Returns:
        dict with ``atom_types (N,)``, ``frac_coords, pos (N, 3)``, ``cell (3, 3)``,
        ``lengths, angles (3,)`` as NumPy arrays and ``formula`` (reduced formula).

    Raises:
        ValueError: the structure fails :func:`dit3d.chem.crystals.check_structure` or Niggli reduction.
    """
    from dit3d.chem.crystals import canonical_structure, structure_to_arrays

    s = canonical_structure(structure, niggli=niggli)
    rec = structure_to_arrays(s)
    frac = rec.frac_coords.astype(np.float32)
    frac[frac >= 1.0] = 0.0
    cell = np.asarray(s.lattice.matrix, np.float64)
    pos = (frac.astype(np.float64) @ cell).astype(np.float32)
    return {"structure": s, "atom_types": rec.atomic_numbers, "frac_coords": frac, "pos": pos,
            "cell": cell.astype(np.float32), "lengths": rec.lengths.astype(np.float32),
            "angles": rec.angles.astype(np.float32), "formula": s.composition.reduced_formula}


def space_group_number(structure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE) -> int:
    """International space group number (1..230) from pymatgen's ``SpacegroupAnalyzer``
    (spglib), or 0 when spglib finds none."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return int(SpacegroupAnalyzer(structure, symprec=symprec,
                                          angle_tolerance=angle_tolerance).get_space_group_number())
        except Exception:  # noqa: BLE001 - spglib failures come as several types
            return 0


def parse_crystal_csv(path: PathLike, symprec: float = SYMPREC, niggli: bool = True,
                      progress: bool | None = None, file_index: int = 0
                      ) -> tuple[CrystalArrays, list[dict[str, Any]], int]:
    """Parse every row of a CDVAE-layout CSV into :class:`CrystalArrays`.

    Rows that fail (empty ``cif``, malformed CIF, several data blocks, unknown elements,
    NaN coordinates, zero atoms, disordered sites, impossible lattices, failed Niggli
    reduction) are skipped and returned as records ``{"row", "material_id", "reason"}``
    (``row``: 0-based data row, header excluded; the same as pandas' index).

    Args:
        path: the CSV.
        symprec: space-group tolerance (Angstrom), see :data:`SYMPREC`.
        niggli: Niggli-reduce before canonicalising (CDVAE does).
        progress: tqdm bar; ``None`` shows it only on a terminal.
        file_index: stored in ``csv_file`` of every crystal.

    Returns:
        ``(arrays, failed_rows, num_rows)``.
    """
    df = read_crystal_csv(path)
    ids = df["material_id"].tolist() if "material_id" in df.columns else [""] * len(df)
    cols: dict[str, list] = {k: [] for k in ("num_atoms", "atom_types", "frac_coords", "pos", "cell", "lengths",
                                             "angles", "spacegroup", "csv_row", "material_id", "formula")}
    failed: list[dict[str, Any]] = []
    name = f"{Path(path).parent.name}/{Path(path).name}"
    bar = tqdm(df["cif"].tolist(), desc=f"parsing {name}", unit="row", leave=False,
               disable=None if progress is None else not progress)  # None: only on a terminal
    for row, text in enumerate(bar):
        try:
            fields = _parse_row(text, f"{name} row {row}", niggli)
        except Exception as err:  # noqa: BLE001 - one odd row must not abort a parse of thousands
            failed.append({"row": row, "material_id": ids[row], "reason": _failure_reason(err)})
            continue
        cols["num_atoms"].append(len(fields["atom_types"]))
        for k in ("atom_types", "frac_coords", "pos", "cell", "lengths", "angles"):
            cols[k].append(fields[k])
        cols["spacegroup"].append(space_group_number(fields["structure"], symprec))
        cols["csv_row"].append(row)
        cols["material_id"].append(str(ids[row]))
        cols["formula"].append(fields["formula"])
    if not cols["num_atoms"]:
        return _empty_arrays(), failed, len(df)
    return _arrays_from_columns(cols, file_index), failed, len(df)


def _parse_row(text: str, where: str, niggli: bool) -> dict[str, Any]:
    """:func:`crystal_fields` of the one structure in a row's CIF text (``where`` names the row in errors)."""
    from dit3d.chem.crystals import parse_cif

    if not text.strip():
        raise ValueError("empty cif cell")
    structures = parse_cif(text, where)
    if len(structures) != 1:
        raise ValueError(f"the cif holds {len(structures)} structures (data blocks); one per row is expected")
    return crystal_fields(structures[0], niggli)


def _failure_reason(err: Exception) -> str:
    """The reason recorded for a skipped row: the problem a CIF or value error states, else type and message."""
    from dit3d.chem.crystals import CrystalFileError

    if isinstance(err, CrystalFileError):
        return err.problem
    if isinstance(err, ValueError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _arrays_from_columns(cols: dict[str, list], file_index: int) -> CrystalArrays:
    """Concatenate per-crystal columns (atoms of every crystal back to back) into :class:`CrystalArrays`."""
    M = len(cols["num_atoms"])
    return CrystalArrays(
        num_atoms=torch.tensor(cols["num_atoms"], dtype=torch.long),
        atom_types=torch.from_numpy(np.concatenate(cols["atom_types"])).long(),
        frac_coords=torch.from_numpy(np.concatenate(cols["frac_coords"])),
        pos=torch.from_numpy(np.concatenate(cols["pos"])),
        cell=torch.from_numpy(np.stack(cols["cell"])),
        lengths=torch.from_numpy(np.stack(cols["lengths"])),
        angles=torch.from_numpy(np.stack(cols["angles"])),
        spacegroup=torch.tensor(cols["spacegroup"], dtype=torch.long),
        csv_file=torch.full((M,), file_index, dtype=torch.long),
        csv_row=torch.tensor(cols["csv_row"], dtype=torch.long),
        material_id=cols["material_id"], formula=cols["formula"])


def collate_crystals(arr: CrystalArrays) -> tuple[Data, dict[str, Tensor] | None]:
    """The :class:`InMemoryDataset` storage ``(data, slices)`` of flat crystal tensors."""
    M = arr.num_atoms.numel()
    node_slices = torch.cat([arr.num_atoms.new_zeros(1), arr.num_atoms.cumsum(0)])
    graph_slices = torch.arange(M + 1)
    data = Data(atom_types=arr.atom_types, pos=arr.pos, frac_coords=arr.frac_coords, cell=arr.cell,
                lengths=arr.lengths, angles=arr.angles, dataset_idx=torch.full((M,), CRYSTAL, dtype=torch.long),
                spacegroup=arr.spacegroup, num_atoms=arr.num_atoms, csv_file=arr.csv_file, csv_row=arr.csv_row,
                material_id=list(arr.material_id), formula=list(arr.formula))
    if M == 1:  # PyG stores a lone example as itself, without slices
        data.material_id, data.formula = arr.material_id[0], arr.formula[0]
        return data, None
    return data, {k: node_slices for k in _NODE_KEYS} | {k: graph_slices for k in _GRAPH_KEYS}


def shared_fields(data: Data) -> Data:
    """Only the fields molecules and crystals share (:data:`SHARED_KEYS`), so that QM9
    molecules and crystals can be batched together (PyG batches the first item's keys and
    fails on any that another item lacks). Use as ``transform=shared_fields``.

    Example:
        >>> d = Data(atom_types=torch.tensor([6]), pos=torch.zeros(1, 3), frac_coords=torch.zeros(1, 3),
        ...          cell=torch.zeros(1, 3, 3), lengths=torch.zeros(1, 3), angles=torch.zeros(1, 3),
        ...          dataset_idx=torch.tensor([0]), spacegroup=torch.tensor([0]), num_atoms=torch.tensor([1]),
        ...          smiles="C")
        >>> sorted(shared_fields(d).keys()) == sorted(SHARED_KEYS)
        True
    """
    missing = [k for k in SHARED_KEYS if k not in data]
    if missing:
        raise ValueError(f"the system lacks shared fields {missing}; build it with dit3d.data.QM9 or CrystalDataset")
    return Data(**{k: data[k] for k in SHARED_KEYS})


# ------------------------------------------------------------------------------ caching
def _cache_name(path: str, symprec: float, niggli: bool) -> str:
    """Processed-file name of a CSV: readable prefix + hash of its real path, size, mtime
    and the parse settings, so different roots and edited files never collide."""
    st = os.stat(path)
    key = f"{osp.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{symprec!r}|{niggli}|{FORMAT_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(path).parent.name}-{Path(path).name}")
    return f"{stem}-{digest}.pt"


def _resolve_files(files: PathLike | Iterable[PathLike]) -> list[str]:
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if not items:
        raise ValueError("no crystal CSV files given; pass one or more paths of CDVAE-layout CSVs")
    out = []
    for f in items:
        p = Path(f).expanduser()
        if p.is_dir():
            found = sorted(x.name for x in p.iterdir() if x.name.endswith((".csv", ".csv.gz")))
            raise IsADirectoryError(f"{p} is a folder; pass its CSV files (found: {found}) or a preset of "
                                    f"dit3d.data.crystals.DEV_SPLITS with data_root={str(p)!r}")
        if not p.is_file():
            raise FileNotFoundError(f"crystal CSV {p} does not exist; check the path (and the data root of presets)")
        out.append(str(p.resolve()))
    return out


class CrystalDataset(InMemoryDataset):
    r"""Crystals from CDVAE-layout CSV files, as PyG graphs in the shared molecule/crystal format.

    Each crystal is a :class:`~torch_geometric.data.Data` with

    * ``atom_types`` ``(N,)`` long: atomic numbers;
    * ``frac_coords`` ``(N, 3)`` float32 in [0, 1) and ``pos`` ``(N, 3)`` float32 Cartesian
      Angstrom, ``pos = frac_coords @ cell[0]``;
    * ``cell`` ``(1, 3, 3)`` (rows are lattice vectors, ``Lattice.from_parameters``
      orientation), ``lengths`` ``(1, 3)`` Angstrom, ``angles`` ``(1, 3)`` degrees;
    * ``dataset_idx`` ``(1,)`` = 1 (crystal; QM9 molecules have 0), ``num_atoms`` ``(1,)``;
    * ``spacegroup`` ``(1,)``: international number from pymatgen's ``SpacegroupAnalyzer``
      with ``symprec`` (default :data:`SYMPREC` = 0.1 Angstrom, DiffCSP's ``tolerance``) and
      5 degrees angle tolerance, computed on the canonical structure; 0 if spglib finds none;
    * ``material_id`` (str; ``""`` when the CSV has no such column), ``formula`` (pymatgen
      reduced formula), ``csv_file`` (index into :attr:`files`), ``csv_row`` (0-based data row).

    Processing is CDVAE's: pymatgen CIF parse (``primitive=False``), Niggli reduction,
    lattice rebuilt from its parameters. Rows that fail are skipped with a warning naming
    row and reason, and kept in :attr:`failed_rows` (also saved in the cache).

    Several files are concatenated in order; with ``dedup`` the first occurrence of each
    ``material_id`` is kept (MP-20 pilot val/test overlap the biternary sets).

    **Cache**: each CSV is parsed once into ``root/processed/<folder>-<file>-<hash>.pt``, the
    hash covering the file's real path, size and modification time and the parse settings
    (``symprec``, ``niggli``, format version); a different root or an edited file gets its own
    cache, and a file shared by several datasets is parsed once. Files are written to a
    temporary name and renamed. Old entries are never deleted automatically.

    Args:
        files: one CSV path (``.csv`` or ``.csv.gz``) or a sequence of them.
        root: cache directory; default ``$DIT3D_CACHE/crystals``, else
            ``$XDG_CACHE_HOME/dit3d/crystals``, else ``~/.cache/dit3d/crystals``.
        subset: keep only the first ``subset`` crystals (after de-duplication).
        dedup: drop repeated ``material_id`` s (first kept).
        exclude_ids: drop crystals with these ``material_id`` s (e.g. a training set's, to
            keep a validation set disjoint from it).
        symprec: space-group tolerance in Angstrom.
        niggli: Niggli-reduce before canonicalising.
        progress: show a tqdm bar while parsing (``None``: only on a terminal).
        force_reload: re-parse even when a cache exists.
        transform: applied to each crystal on access (e.g. :func:`shared_fields`).

    Shapes:
        see above; batched, the ``(1, ...)`` fields stack to ``(B, ...)``.

    Example:
        >>> ds = CrystalDataset(["<root>/perov_5/val.csv"])  # doctest: +SKIP
        >>> ds[0].frac_coords.shape, ds.failed_rows  # doctest: +SKIP
    """

    def __init__(self, files: PathLike | Sequence[PathLike], root: str | None = None, subset: int | None = None,
                 dedup: bool = True, exclude_ids: Iterable[str] | None = None, symprec: float = SYMPREC,
                 niggli: bool = True, progress: bool | None = None, force_reload: bool = False,
                 transform: Callable[[Data], Data] | None = None) -> None:
        if subset is not None and (not isinstance(subset, int) or isinstance(subset, bool) or subset <= 0):
            raise ValueError(f"subset must be a positive int (or None for every crystal), got {subset!r}")
        if not (isinstance(symprec, (int, float)) and symprec > 0):
            raise ValueError(f"symprec must be a positive distance in Angstrom (0.1 is DiffCSP's), got {symprec!r}")
        self.files: list[str] = _resolve_files(files)
        self.symprec, self.niggli, self.progress = float(symprec), bool(niggli), progress
        self._names = [_cache_name(f, self.symprec, self.niggli) for f in self.files]
        root = osp.expanduser(root) if root else default_root()
        super().__init__(root, transform=transform, force_reload=force_reload, log=False)

        arr = self._load_files()
        keep = self._keep_mask(arr.material_id, dedup, exclude_ids)  # (M,)
        idx = torch.nonzero(keep).view(-1)
        if subset is not None:
            if subset > idx.numel():
                raise ValueError(f"subset={subset} exceeds the {idx.numel()} crystals of {self.files}")
            idx = idx[:subset]
        if idx.numel() == 0:
            raise ValueError(f"no crystals left from {self.files}: {len(self.failed_rows)} rows failed to parse, "
                             f"{self.num_excluded} excluded, {self.num_duplicates} duplicates; see dataset.failed_rows")
        arr = arr.take(idx) if idx.numel() != len(arr.material_id) else arr
        self.data, self.slices = collate_crystals(arr)

    def _load_files(self) -> CrystalArrays:
        """Every file's crystals (cached parse) back to back; sets :attr:`failed_rows` and
        :attr:`num_rows` and warns about skipped rows."""
        parts, failed, rows = [], [], 0
        for i, (f, p) in enumerate(zip(self.files, self.processed_paths)):
            cached = self._load_cache(f, p)
            arr = CrystalArrays(**{k: cached[k] for k in CrystalArrays._fields})
            parts.append(arr._replace(csv_file=torch.full_like(arr.csv_file, i)))
            failed += [{"file": f, **r} for r in cached["failed_rows"]]
            rows += int(cached["num_rows"])
        #: rows that could not be parsed: dicts with file, row, material_id, reason
        self.failed_rows: list[dict[str, Any]] = failed
        self.num_rows = rows
        if failed:
            shown = "; ".join(f"{Path(r['file']).name} row {r['row']}"
                              f"{' (' + r['material_id'] + ')' if r['material_id'] else ''}: {r['reason']}"
                              for r in failed[:5])
            warnings.warn(f"{len(failed)} of {rows} crystal rows could not be parsed and were skipped: {shown}"
                          f"{' ...' if len(failed) > 5 else ''} (all in dataset.failed_rows)", stacklevel=3)
        return CrystalArrays.concat(parts) if len(parts) > 1 else parts[0]

    def _keep_mask(self, material_ids: list[str], dedup: bool, exclude_ids: Iterable[str] | None) -> Tensor:
        """``(M,)`` bool: crystals neither in ``exclude_ids`` nor (``dedup``) a repeat of an
        earlier ``material_id``; sets :attr:`num_excluded` and :attr:`num_duplicates`."""
        keep = torch.ones(len(material_ids), dtype=torch.bool)
        excluded = set(map(str, exclude_ids)) if exclude_ids is not None else set()
        seen: set[str] = set()
        self.num_duplicates = self.num_excluded = 0
        for i, mid in enumerate(material_ids):
            if mid and mid in excluded:
                keep[i] = False
                self.num_excluded += 1
            elif mid and dedup and mid in seen:
                keep[i] = False
                self.num_duplicates += 1
            seen.add(mid)
        return keep

    # ------------------------------------------------------------------ PyG hooks
    @property
    def raw_file_names(self) -> list[str]:
        return list(self.files)  # absolute: PyG's raw_paths keep them as they are

    @property
    def processed_file_names(self) -> list[str]:
        return list(self._names)

    def download(self) -> None:
        missing = [f for f in self.files if not osp.isfile(f)]
        raise FileNotFoundError(f"crystal CSV files {missing} not found; dit3d downloads nothing, "
                                f"point it at local copies")

    def process(self) -> None:
        # PyG calls this when any cache file is missing (or on force_reload): parse only what is needed.
        for f, p in zip(self.files, self.processed_paths):
            if self.force_reload or not osp.exists(p):
                self._parse_and_save(f, p)

    def _parse_and_save(self, file: str, path: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        arr, failed, rows = parse_crystal_csv(file, self.symprec, self.niggli, self.progress)
        st = os.stat(file)
        cached = arr.to_dict() | {
            "format_version": FORMAT_VERSION, "source": osp.realpath(file), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "symprec": self.symprec, "angle_tolerance": ANGLE_TOLERANCE,
            "niggli": self.niggli, "num_rows": rows, "failed_rows": failed,
            "parse_seconds": time.perf_counter() - t0}
        os.makedirs(osp.dirname(path), exist_ok=True)
        _atomic_save(cached, path)
        return cached

    def _load_cache(self, file: str, path: str) -> dict[str, Any]:
        try:
            cached = torch.load(path, weights_only=True)
            if cached.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format {cached.get('format_version')} differs from {FORMAT_VERSION}")
            return cached
        except Exception as err:  # noqa: BLE001 - any unreadable cache means "rebuild"
            warnings.warn(f"rebuilding the crystal cache {path} ({type(err).__name__}: {err})", stacklevel=3)
            return self._parse_and_save(file, path)

    # ------------------------------------------------------------------ accessors
    def _graph_list(self, key: str) -> list[str]:
        values = self._data[key]
        values = [values] if isinstance(values, str) else list(values)
        return values if self._indices is None else [values[i] for i in self.indices()]

    @property
    def material_ids(self) -> list[str]:
        """``material_id`` of the crystals, in dataset order."""
        return self._graph_list("material_id")

    @property
    def formulas(self) -> list[str]:
        """Reduced formulas of the crystals, in dataset order."""
        return self._graph_list("formula")

    def parse_seconds(self) -> list[float]:
        """Seconds the parse of each file took when its cache was built."""
        return [float(torch.load(p, weights_only=True)["parse_seconds"]) for p in self.processed_paths]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, files={[Path(f).name for f in self.files]})"


# ------------------------------------------------------------------- development splits
@dataclass(frozen=True)
class CrystalSplit:
    """A train / val / test split as CSV paths relative to a data root.

    Args:
        train, val, test: paths relative to the root; several files are combined and
            de-duplicated on ``material_id``.
        val_fraction: with no ``val`` files, hold out this fraction of the training
            crystals (seeded permutation) as validation.
        description: what the split is, for documentation and logs.
    """

    train: tuple[str, ...]
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    val_fraction: float = 0.0
    description: str = ""


#: Documented development splits of the official CDVAE/DiffCSP files (the full training
#: sets are not available here, so none of these reproduces a paper's protocol; label
#: numbers measured on them as such). Paths are relative to a data root the caller gives,
#: e.g. ``../shared/data/crystals`` in this project's checkout.
DEV_SPLITS: dict[str, CrystalSplit] = {
    "mp20-dev": CrystalSplit(
        train=("mp_20_pilot/train.csv.gz", "mp_20_biternary/val.csv.gz"),
        val=("mp_20_pilot/val.csv.gz",),
        test=("mp_20_biternary/test.csv.gz",),
        description="MP-20: train on the pilot train rows (first 1000 of the official train split) plus "
                    "the official val split's binary/ternary compounds (7140); validate on the pilot val "
                    "rows not already in training (the 204 of 1000 that are not binary/ternary); evaluate "
                    "on the official test split's binary/ternary compounds (7118)."),
    "perov5-dev": CrystalSplit(
        train=("perov_5/val.csv",), test=("perov_5/test.csv",), val_fraction=0.05,
        description="Perov-5: train on the official val split (3787), 5% of it held out (seeded) for "
                    "validation; evaluate on the official test split (3785)."),
    "carbon24-dev": CrystalSplit(
        train=("carbon_24/val.csv",), test=("carbon_24/test.csv",), val_fraction=0.05,
        description="Carbon-24: train on the official val split (2032), 5% held out; test on official test (2030)."),
    "mpts52-dev": CrystalSplit(
        train=("mpts_52/val.csv.gz",), test=("mpts_52/test.csv.gz",), val_fraction=0.05,
        description="MPTS-52: train on the official val split (5000), 5% held out; test on official test (8096)."),
}


def dev_split_files(name: str, data_root: PathLike) -> dict[str, list[str]]:
    """Absolute CSV paths of a :data:`DEV_SPLITS` preset under ``data_root``.

    Raises:
        ValueError: unknown preset name.
        FileNotFoundError: a file of the preset is missing under ``data_root``.
    """
    if name not in DEV_SPLITS:
        raise ValueError(f"unknown crystal split preset {name!r}; choose one of {sorted(DEV_SPLITS)}")
    preset = DEV_SPLITS[name]
    root = Path(data_root).expanduser()
    out = {}
    for split in ("train", "val", "test"):
        paths = [root / rel for rel in getattr(preset, split)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            folders = sorted({Path(r).parts[0] for r in getattr(preset, split)})
            raise FileNotFoundError(f"preset {name!r} needs {missing} under data root {str(root)!r}; point "
                                    f"data_root at the folder holding {folders}")
        out[split] = [str(p) for p in paths]
    return out
