"""Molecule files: multi-frame XYZ, SDF, and element symbols (atomic writes via :mod:`dit3d.fileio`).

A molecule here is what a generator outputs: atomic numbers ``(N,)`` and Cartesian
positions ``(N, 3)`` in Angstrom, optionally with an RDKit ``Mol`` (SDF) and a comment.
Readers reject broken files with a :class:`MoleculeFileError` that names the file, the
record and line, and the problem; writers never leave half-written output behind.

XYZ is the plain multi-frame format: per frame an atom count, a comment line, then one
``symbol x y z`` line per atom (extra columns are ignored, as in extended XYZ; a bare
atomic number is accepted in place of the symbol). SDF is read and written with RDKit.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rdkit import Chem, rdBase

from dit3d.fileio import atomic_output, atomic_write

__all__ = [
    "MoleculeFileError", "MoleculeRecord", "atomic_number", "element_symbol", "to_atomic_numbers",
    "atomic_output", "atomic_write", "write_xyz", "read_xyz", "write_sdf", "read_sdf",
    "read_molecules",
]

PathLike = str | os.PathLike


class MoleculeFileError(ValueError):
    """A molecule file is missing, empty or malformed.

    Args:
        path: the file.
        problem: what is wrong.
        record: 0-based index of the molecule (frame / SDF record), if known.
        line: 1-based line number in the file, if known.
        fix: what the user can do about it.
    """

    def __init__(self, path: PathLike, problem: str, *, record: int | None = None,
                 line: int | None = None, fix: str | None = None) -> None:
        self.path, self.problem, self.record, self.line = str(path), problem, record, line
        where = ", ".join(x for x in (f"record {record}" if record is not None else "",
                                      f"line {line}" if line is not None else "") if x)
        msg = f"{self.path}{f' ({where})' if where else ''}: {problem}"
        super().__init__(msg + (f"; {fix}" if fix else ""))


class MoleculeRecord(NamedTuple):
    """One molecule read from a file (also accepted by :func:`write_xyz`).

    Shapes:
        atomic_numbers: ``(N,)`` int64; positions: ``(N, 3)`` float64, Angstrom.
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    comment: str = ""
    mol: Chem.Mol | None = None


# RDKit's periodic table, read once into dicts: asking RDKit about an unknown symbol
# prints a C++ stack trace, so unknown symbols are caught here first.
_PT = Chem.GetPeriodicTable()
_Z_TO_SYMBOL = {z: _PT.GetElementSymbol(z) for z in range(1, 119)}
_SYMBOL_TO_Z = {s.lower(): z for z, s in _Z_TO_SYMBOL.items()}


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol, case-insensitively (``"Cl"``, ``"CL"``, ``"cl"``).

    Raises:
        ValueError: the symbol names no element 1..118 (``"X"``, ``"D"`` and ``"*"`` too).

    Example:
        >>> atomic_number("C"), atomic_number("CL")
        (6, 17)
    """
    z = _SYMBOL_TO_Z.get(str(symbol).strip().lower())
    if z is None:
        raise ValueError(f"unknown element symbol {symbol!r}; use a symbol of elements 1..118 such as 'C' or 'Cl'")
    return z


def element_symbol(z: int) -> str:
    """Element symbol of an atomic number 1..118.

    Example:
        >>> element_symbol(8)
        'O'
    """
    try:
        ok = not isinstance(z, (bool, np.bool_)) and int(z) == z and int(z) in _Z_TO_SYMBOL
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"atomic number {z!r} is not an element; expected an integer in 1..118")
    return _Z_TO_SYMBOL[int(z)]


def to_atomic_numbers(atoms: Iterable[int | str] | np.ndarray) -> np.ndarray:
    """Atomic numbers ``(N,)`` int64 from atomic numbers or element symbols, validated.

    Example:
        >>> to_atomic_numbers(["O", "H", 1]).tolist()
        [8, 1, 1]
    """
    arr = np.asarray(atoms, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"atoms must be a 1-D sequence of atomic numbers or symbols, got shape {arr.shape}")
    vals = [atomic_number(a) if isinstance(a, str) else a for a in arr.tolist()]
    for z in vals:
        element_symbol(z)  # raises on 0, negatives, fractions and > 118
    return np.asarray(vals, dtype=np.int64).reshape(-1)


def _check_molecule(atomic_numbers: Sequence[int] | np.ndarray, positions: Sequence | np.ndarray,
                    what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        z = to_atomic_numbers(atomic_numbers)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    if len(z) == 0:
        raise ValueError(f"{what} has zero atoms; a molecule file needs at least one atom per molecule")
    try:
        pos = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: positions must be numbers, shape (N, 3) ({e})") from None
    if pos.shape != (len(z), 3):
        raise ValueError(f"{what}: positions must have shape (N, 3) = ({len(z)}, 3) like the atoms, got {pos.shape}")
    if not np.isfinite(pos).all():
        raise ValueError(f"{what}: positions contain NaN or inf; drop or fix this molecule before writing it")
    return z, pos


def write_xyz(path: PathLike, molecules: Iterable[Sequence]) -> Path:
    """Write molecules as a multi-frame XYZ file, atomically.

    Args:
        path: output file.
        molecules: items ``(atomic_numbers, positions)`` or ``(atomic_numbers, positions,
            comment)``, or :class:`MoleculeRecord`; atoms as numbers or symbols.

    Raises:
        ValueError: no molecules, or a molecule that is not such an item, has zero atoms,
            unknown elements, positions not ``(N, 3)`` numbers, NaN/inf positions, or a
            multi-line comment (nothing is written).
        FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError: ``path``
            cannot be written (see :func:`dit3d.fileio.atomic_output`).
    """
    lines: list[str] = []
    for i, item in enumerate(molecules):
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) < 2:
            raise ValueError(f"molecule {i} must be (atomic_numbers, positions[, comment]) or a MoleculeRecord, "
                             f"got {type(item).__name__}")
        z, pos = _check_molecule(item[0], item[1], f"molecule {i}")
        comment = str(item[2]) if len(item) > 2 and item[2] is not None else ""
        if "\n" in comment or "\r" in comment:
            raise ValueError(f"molecule {i}: the XYZ comment must be one line, got {comment!r}")
        lines += [str(len(z)), comment]
        lines += [f"{_Z_TO_SYMBOL[int(a)]:<2s} {x: .10f} {y: .10f} {w: .10f}" for a, (x, y, w) in zip(z, pos)]
    if not lines:
        raise ValueError(f"no molecules to write to {path}; an empty XYZ file could not be read back")
    return atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))


def _read_text(path: PathLike) -> tuple[Path, str]:
    path = Path(path)
    if path.is_dir():
        raise MoleculeFileError(path, "is a folder, not a molecule file", fix="give the path of an .sdf or .xyz file")
    if not path.is_file():
        raise MoleculeFileError(path, "file does not exist", fix="check the path")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise MoleculeFileError(path, "file is empty", fix="the writer may have failed; regenerate it")
    return path, text


def read_xyz(path: PathLike) -> list[MoleculeRecord]:
    """Read every frame of a multi-frame XYZ file; blank lines between frames are allowed.

    Raises:
        MoleculeFileError: missing or empty file, a folder, bad atom count, truncated frame,
            too few columns, unknown element, non-numeric or non-finite coordinates.
    """
    path, text = _read_text(path)
    lines = text.splitlines()
    out: list[MoleculeRecord] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        rec = len(out)
        n = _xyz_count(lines[i], path, rec, i + 1)
        if i + 2 + n > len(lines):  # count line, comment line, n atom lines
            raise MoleculeFileError(path, f"truncated frame: count says {n} atoms but only "
                                    f"{max(len(lines) - i - 2, 0)} lines follow the comment",
                                    record=rec, line=i + 1)
        atoms = [_xyz_atom(lines[i + 2 + k], path, rec, i + 3 + k, n) for k in range(n)]
        z = np.array([a for a, _ in atoms], dtype=np.int64)  # (n,)
        pos = np.array([xyz for _, xyz in atoms], dtype=np.float64).reshape(n, 3)  # (n, 3)
        out.append(MoleculeRecord(z, pos, lines[i + 1]))
        i += 2 + n
    return out


def _xyz_count(line: str, path: Path, rec: int, lineno: int) -> int:
    """The atom count opening an XYZ frame (a positive int alone on its line)."""
    tok = line.split()
    try:
        n = int(tok[0]) if len(tok) == 1 else -1
    except ValueError:
        n = -1
    if n <= 0:
        raise MoleculeFileError(path, f"expected a positive atom count, got {line.strip()!r}", record=rec,
                                line=lineno, fix="the previous frame may have more atom lines than its count says")
    return n


def _xyz_atom(line: str, path: Path, rec: int, lineno: int, n: int) -> tuple[int, list[float]]:
    """Atomic number and finite coordinates of one ``symbol x y z`` line of a frame of ``n`` atoms."""
    tok = line.split()
    if len(tok) < 4:
        raise MoleculeFileError(path, f"expected 'symbol x y z', got {line.strip()!r}", record=rec,
                                line=lineno, fix=f"check the atom count ({n}) of this frame")
    try:
        z = int(tok[0]) if tok[0].isdigit() else atomic_number(tok[0])
        element_symbol(z)  # atomic numbers must be 1..118 too
    except ValueError:
        raise MoleculeFileError(path, f"unknown element {tok[0]!r}", record=rec, line=lineno,
                                fix="use element symbols (C, Cl) or atomic numbers 1..118") from None
    try:
        xyz = [float(t) for t in tok[1:4]]
    except ValueError:
        raise MoleculeFileError(path, f"non-numeric coordinates {tok[1:4]}", record=rec, line=lineno) from None
    if not np.isfinite(xyz).all():
        raise MoleculeFileError(path, f"non-finite coordinates {tok[1:4]}", record=rec, line=lineno,
                                fix="the generator produced NaN/inf; drop or regenerate this sample")
    return z, xyz


def write_sdf(path: PathLike, mols: Iterable[Chem.Mol]) -> Path:
    """Write RDKit molecules (with their conformers) to an SDF file, atomically.

    Molecules that fail sanitisation are written as they are: each is Kekulized on a copy
    when possible, and written with aromatic bond flags otherwise.

    Raises:
        ValueError: no molecules, or an item that is not an RDKit ``Mol`` (nothing is written).
        FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError: ``path``
            cannot be written (see :func:`dit3d.fileio.atomic_output`).
    """
    mols = list(mols)
    if not mols:
        raise ValueError(f"no molecules to write to {path}; an empty SDF file could not be read back")
    for i, m in enumerate(mols):
        if not isinstance(m, Chem.Mol):
            raise ValueError(f"molecule {i} is {type(m).__name__}, not an RDKit Mol; "
                             "build one with dit3d.chem.mol_from_coords")

    def _write(tmp: Path) -> None:
        writer = Chem.SDWriter(str(tmp))
        writer.SetKekulize(False)  # done per molecule below, where it is possible
        try:
            for m in mols:
                m = Chem.Mol(m)
                m.UpdatePropertyCache(strict=False)  # unsanitised input has no valences yet
                with contextlib.suppress(Exception), rdBase.BlockLogs():
                    Chem.Kekulize(m, clearAromaticFlags=True)
                writer.write(m)
        finally:
            writer.close()

    return atomic_write(path, _write)


def read_sdf(path: PathLike) -> list[Chem.Mol | None]:
    """Read every record of an SDF file, unsanitised and with hydrogens kept.

    ``sanitize=False`` keeps invalid generated molecules so they can still be scored;
    a record RDKit cannot parse at all comes back as ``None`` in its position. So does a
    truncated last record, which RDKit itself skips without a word.

    Raises:
        MoleculeFileError: missing, empty or unreadable file, or a missing ``$$$$`` line.
    """
    path, text = _read_text(path)
    try:
        with rdBase.BlockLogs():
            mols = list(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False))
    except OSError as e:
        raise MoleculeFileError(path, f"RDKit cannot read this as SDF ({e})",
                                fix="check that it is an SDF file") from None
    records = _sdf_record_count(path, text)
    return mols + [None] * (records - len(mols))


def _sdf_record_count(path: Path, text: str) -> int:
    """Records in an SDF text: blocks ended by ``$$$$``, plus a non-blank unterminated tail.

    A block with two ``M  END`` lines has lost the ``$$$$`` between two records (RDKit would
    read the second as data items of the first): that raises :class:`MoleculeFileError`.
    """
    count, body, ends = 0, False, 0
    for k, line in enumerate(text.splitlines()):
        if line.strip() == "$$$$":
            count, body, ends = count + 1, False, 0
        elif line.strip():
            body = True
            if line.startswith("M  END"):
                ends += 1
                if ends > 1:
                    raise MoleculeFileError(path, "two molecules ('M  END' lines) without a '$$$$' line between "
                                            "them", record=count, line=k + 1,
                                            fix="the separator line is missing or damaged; regenerate the file")
    return count + int(body)


def _diagnose_sdf_record(path: Path, record: int) -> MoleculeFileError:
    """Best-effort reason why RDKit rejected an SDF record (V2000 atom block)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    starts = [0] + [k + 1 for k, s in enumerate(lines) if s.strip() == "$$$$"]
    start = starts[record] if record < len(starts) else 0
    err = MoleculeFileError(path, "RDKit could not parse this record", record=record, line=start + 1,
                            fix="check its counts line, atom block and bond block")
    if start + 3 >= len(lines):
        return MoleculeFileError(path, "truncated record: the file ends before its counts line", record=record,
                                 line=len(lines), fix="the writer may have been interrupted; regenerate the file")
    try:
        n = int(lines[start + 3][:3])
    except ValueError:
        return MoleculeFileError(path, "bad counts line", record=record, line=start + 4)
    for k in range(start + 4, start + 4 + n):
        if k >= len(lines):
            return MoleculeFileError(path, f"truncated atom block ({n} atoms expected)", record=record, line=k + 1)
        s = lines[k]
        try:
            xyz = [float(s[c:c + 10]) for c in (0, 10, 20)]
        except ValueError:
            return MoleculeFileError(path, f"non-numeric coordinates in {s.strip()!r}", record=record, line=k + 1)
        if not np.isfinite(xyz).all():
            return MoleculeFileError(path, f"non-finite coordinates {xyz}", record=record, line=k + 1,
                                     fix="the generator produced NaN/inf; drop or regenerate this sample")
        if s[31:34].strip().lower() not in _SYMBOL_TO_Z:
            return MoleculeFileError(path, f"unknown element {s[31:34].strip()!r}", record=record, line=k + 1)
    end = starts[record + 1] - 1 if record + 1 < len(starts) else len(lines)
    if not any(line.startswith("M  END") for line in lines[start:end]):
        return MoleculeFileError(path, "truncated record: no 'M  END' line", record=record, line=end,
                                 fix="the writer may have been interrupted; regenerate the file")
    return err


def read_molecules(path: PathLike) -> list[MoleculeRecord]:
    """Read a ``.sdf`` or ``.xyz`` file into :class:`MoleculeRecord` s (SDF ones carry the Mol).

    Raises:
        MoleculeFileError: unknown extension, a folder, or any of the problems of
            :func:`read_xyz`; for SDF, a record that fails to parse, is truncated, has zero
            atoms or holds no conformer, unknown elements (atomic number 0, e.g. ``*``) and
            non-finite coordinates.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xyz":
        return read_xyz(path)
    if suffix != ".sdf":
        raise MoleculeFileError(path, f"unknown extension {path.suffix!r}", fix="use .sdf or .xyz")
    out = []
    for rec, mol in enumerate(read_sdf(path)):
        if mol is None:
            raise _diagnose_sdf_record(path, rec)
        if mol.GetNumAtoms() == 0:
            raise MoleculeFileError(path, "record has zero atoms", record=rec,
                                    fix="drop it, or check the counts line of this record")
        if mol.GetNumConformers() == 0:
            raise MoleculeFileError(path, "record has no coordinates", record=rec)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], np.int64)
        if (z < 1).any():
            raise MoleculeFileError(path, f"unknown element at atom {int(np.argmin(z))} (atomic number 0)", record=rec)
        pos = np.asarray(mol.GetConformer().GetPositions(), np.float64).reshape(-1, 3)
        if not np.isfinite(pos).all():
            raise MoleculeFileError(path, "non-finite coordinates", record=rec)
        out.append(MoleculeRecord(z, pos, mol.GetProp("_Name") if mol.HasProp("_Name") else "", mol))
    return out
