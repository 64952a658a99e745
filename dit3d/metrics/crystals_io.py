"""Read crystals to score from a CIF folder, a CIF file, an extxyz file or a CDVAE-layout CSV,
keeping every record that cannot be read as a counted failure with its reason.

A generated set with unreadable records is still scored: the records count as samples that
are neither structurally nor compositionally valid (CDVAE counts a crystal that cannot be
built as invalid). Only input that cannot be read at all (missing path, unknown format, a
CSV without a ``cif`` column, a file ASE cannot parse, nothing readable) raises.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dit3d.chem.crystals import CrystalFileError, extxyz_frames, frame_to_structure, parse_cif

__all__ = ["CrystalSet", "load_crystals"]

PathLike = str | os.PathLike
CSV_SUFFIXES = (".csv", ".csv.gz")
_DATA_BLOCK = re.compile(r"^data_", re.MULTILINE)


@dataclass
class CrystalSet:
    """Structures read from one source, with the records that failed.

    Attributes:
        structures: pymatgen ``Structure`` s, in file order.
        labels: where each structure came from (``"test.csv row 3"``, ``"000001.cif"``).
        failures: ``{"where", "reason"}`` for every record that could not be read.
        source: the path read.
    """

    structures: list[Any]
    labels: list[str]
    failures: list[dict[str, str]] = field(default_factory=list)
    source: str = ""

    @property
    def num_records(self) -> int:
        """Records seen: structures read plus failures."""
        return len(self.structures) + len(self.failures)


def _problem(err: Exception) -> str:
    if isinstance(err, CrystalFileError):
        return err.problem
    return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"


def _cif_blocks(text: str) -> list[str]:
    """The ``data_`` blocks of a CIF text (one string each), so one bad block fails alone."""
    starts = [m.start() for m in _DATA_BLOCK.finditer(text)]
    if len(starts) <= 1:
        return [text]
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def _add_cif_text(out: CrystalSet, text: str, where: str) -> None:
    blocks = _cif_blocks(text)
    for i, block in enumerate(blocks):
        label = where if len(blocks) == 1 else f"{where} block {i}"
        try:
            structures = parse_cif(block, label)
        except Exception as err:  # noqa: BLE001 - one bad record must not stop the others
            out.failures.append({"where": label, "reason": _problem(err)})
            continue
        for j, s in enumerate(structures):
            out.structures.append(s)
            out.labels.append(label if len(structures) == 1 else f"{label} structure {j}")


def _read_csv(path: Path, out: CrystalSet) -> None:
    from dit3d.data.crystals import read_crystal_csv

    df = read_crystal_csv(path)  # FileNotFoundError / ValueError name the file
    ids = df["material_id"].tolist() if "material_id" in df.columns else [""] * len(df)
    for row, text in enumerate(df["cif"].tolist()):
        where = f"{path.name} row {row}" + (f" ({ids[row]})" if ids[row] else "")
        if not text.strip():
            out.failures.append({"where": where, "reason": "empty cif cell"})
            continue
        try:
            structures = parse_cif(text, where)
            if len(structures) != 1:
                raise ValueError(f"the cif holds {len(structures)} structures; one per row is expected")
        except Exception as err:  # noqa: BLE001
            out.failures.append({"where": where, "reason": _problem(err)})
            continue
        out.structures.append(structures[0])
        out.labels.append(where)


def _read_extxyz(path: Path, out: CrystalSet) -> None:
    for i, atoms in enumerate(extxyz_frames(path)):
        where = f"{path.name} frame {i}"
        try:
            out.structures.append(frame_to_structure(atoms))
            out.labels.append(where)
        except Exception as err:  # noqa: BLE001
            out.failures.append({"where": where, "reason": _problem(err)})


def load_crystals(path: PathLike) -> CrystalSet:
    """Structures of a CIF folder (``*.cif``, sorted by name), a ``.cif`` file (every data block),
    an ``.extxyz``/``.xyz`` file (every frame) or a CDVAE-layout ``.csv``/``.csv.gz`` (one CIF
    per row, column ``cif``). Structures are kept as written (no Niggli reduction: every
    metric here is independent of the cell choice).

    Records that cannot be read (malformed CIF, unknown element, NaN coordinates, zero atoms,
    disordered sites, impossible lattice, empty CSV cell) become ``failures`` with a reason.

    Raises:
        CrystalFileError: the path does not exist, has an unknown extension, an empty folder or
            file, a malformed extxyz, or no readable structure at all (first reasons given).
        ValueError: a CSV without a ``cif`` column or that pandas cannot read.
    """
    p = Path(path)
    out = CrystalSet([], [], [], str(p))
    name = p.name.lower()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".cif" and f.is_file())
        if not files:
            raise CrystalFileError(p, "the folder holds no .cif files", fix="point to a CIF folder, CIF, extxyz or CSV")
        for f in files:
            _add_cif_text(out, f.read_text(encoding="utf-8", errors="replace"), f.name)
    elif not p.exists():
        raise CrystalFileError(p, "file does not exist", fix="check the path")
    elif name.endswith(CSV_SUFFIXES):
        _read_csv(p, out)
    elif name.endswith(".cif"):
        text = p.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise CrystalFileError(p, "file is empty", fix="the writer may have failed; regenerate it")
        _add_cif_text(out, text, p.name)
    elif name.endswith((".extxyz", ".xyz")):
        if p.stat().st_size == 0:
            raise CrystalFileError(p, "file is empty", fix="the writer may have failed; regenerate it")
        _read_extxyz(p, out)
    else:
        raise CrystalFileError(p, f"unknown extension {p.suffix!r}",
                               fix="use a folder of .cif files, .cif, .extxyz or a CDVAE .csv/.csv.gz")
    if not out.structures:
        shown = "; ".join(f"{f['where']}: {f['reason']}" for f in out.failures[:3])
        raise CrystalFileError(p, f"no readable structure among {len(out.failures)} records ({shown})",
                               fix="check the file format")
    return out
