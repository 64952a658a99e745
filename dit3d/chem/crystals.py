r"""Crystals: shared-representation arrays <-> pymatgen ``Structure`` <-> ASE ``Atoms``, CIF and extxyz.

A crystal here is what ADiT's shared molecule/crystal representation holds: atomic numbers
``(N,)``, fractional coordinates ``(N, 3)`` and the lattice as 3 lengths (Angstrom) and 3
angles (degrees). The lattice matrix is always rebuilt from those six numbers with
``Lattice.from_parameters`` (pymatgen's convention; rows are the lattice vectors, Cartesian
positions are ``frac @ matrix``), so equal parameters give the same orientation: this is the
"canonical" lattice of CDVAE (Xie et al. 2022), which Niggli-reduces first
(:func:`canonical_structure`).

Readers reject broken input with a :class:`CrystalFileError` that names the file, the block
(CIF data block / extxyz frame) and the problem: malformed CIF, unknown elements, NaN
coordinates, zero atoms, non-positive lattice lengths or volume, angles outside (0, 180),
disordered (partially occupied) sites. Writers validate first and write atomically (via
:mod:`dit3d.fileio`), so a failure never leaves a partial file.

Imports pymatgen, ASE and NumPy; knows nothing of models.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies

from dit3d.chem.io import to_atomic_numbers
from dit3d.fileio import atomic_directory, atomic_write

if TYPE_CHECKING:  # ASE is imported when a conversion runs
    import ase

__all__ = [
    "CrystalFileError", "CrystalRecord", "canonical_structure", "check_structure", "structure_from_arrays",
    "structure_to_arrays", "structure_to_ase", "ase_to_structure", "parse_cif", "read_cif", "read_extxyz",
    "read_crystals", "write_cif", "write_cif_dir", "write_extxyz", "wrap_frac",
]

PathLike = str | os.PathLike

#: a lattice whose volume is below this fraction of ``a * b * c`` is degenerate (flat)
MIN_VOLUME_FRACTION = 1e-6


class CrystalFileError(ValueError):
    """A crystal file (or CIF text) is missing, empty or malformed.

    Args:
        path: the file, or a label such as ``"<string>"`` or ``"data.csv row 7"``.
        problem: what is wrong (also kept as ``.problem``, e.g. for per-row reports).
        record: 0-based index of the CIF data block or extxyz frame, if known.
        fix: what the user can do about it.
    """

    def __init__(self, path: PathLike, problem: str, *, record: int | None = None, fix: str | None = None) -> None:
        self.path, self.problem, self.record = str(path), problem, record
        where = f" (block {record})" if record is not None else ""
        super().__init__(f"{self.path}{where}: {problem}" + (f"; {fix}" if fix else ""))


class CrystalRecord(NamedTuple):
    """One crystal in the shared representation (NumPy, float64).

    Shapes:
        atomic_numbers: ``(N,)`` int64; frac_coords: ``(N, 3)`` in [0, 1);
        lengths: ``(3,)`` Angstrom; angles: ``(3,)`` degrees.
    """

    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray


def wrap_frac(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped into [0, 1) (``x % 1`` can round to exactly 1.0).

    Example:
        >>> wrap_frac(np.array([-1e-17, 1.0, 0.25, -0.25])).tolist()
        [0.0, 0.0, 0.25, 0.75]
    """
    out = np.asarray(frac) - np.floor(frac)
    return np.where(out >= 1.0, out - 1.0, out)


def _check_lattice(lengths: np.ndarray, angles: np.ndarray) -> str | None:
    """Why lattice parameters are unusable, or None."""
    if not (np.isfinite(lengths).all() and np.isfinite(angles).all()):
        return f"non-finite lattice parameters (lengths {lengths.tolist()}, angles {angles.tolist()})"
    if (lengths <= 0).any():
        return f"non-positive lattice length(s) {lengths.tolist()} Angstrom"
    if ((angles <= 0) | (angles >= 180)).any():
        return f"lattice angle(s) {angles.tolist()} outside (0, 180) degrees"
    if not np.isfinite(np.prod(lengths)):
        return f"lattice lengths {lengths.tolist()} Angstrom are too large: the cell volume overflows"
    c = np.cos(np.radians(angles))
    factor = 1 - (c ** 2).sum() + 2 * c.prod()  # (V / abc)^2
    if not factor > MIN_VOLUME_FRACTION ** 2:
        volume = float(np.prod(lengths) * math.sqrt(max(factor, 0.0)))
        return (f"non-positive or degenerate lattice volume ({volume:.3g} A^3; angles {angles.tolist()} "
                f"cannot close a cell)")
    return None


def check_structure(structure: Structure) -> None:
    """Raise ValueError if a structure cannot be a crystal of the shared representation.

    Problems: not a pymatgen ``Structure``, zero atoms, disordered or partially occupied
    sites, unknown elements (pymatgen ``DummySpecies`` such as ``X``), non-finite
    coordinates, non-positive lattice lengths, angles outside (0, 180) degrees, or a flat
    cell (volume below ``MIN_VOLUME_FRACTION * a * b * c``).
    """
    if not isinstance(structure, Structure):
        raise ValueError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if len(structure) == 0:
        raise ValueError("the structure has zero atoms")
    if not structure.is_ordered:
        i = next(k for k, s in enumerate(structure) if not s.is_ordered)
        raise ValueError(f"disordered or partially occupied site {i} ({structure[i].species}); one fully occupied "
                         "element per site is needed: order it first (e.g. pymatgen's "
                         "OrderDisorderedStructureTransformation) or drop it")
    for i, site in enumerate(structure):
        if isinstance(site.specie, DummySpecies):
            raise ValueError(f"unknown element {site.specie.symbol!r} at site {i}; use element symbols of Z = 1..118")
    lat = structure.lattice
    problem = _check_lattice(np.asarray(lat.abc, float), np.asarray(lat.angles, float))
    if problem:
        raise ValueError(problem)
    if not np.isfinite(structure.frac_coords).all():
        raise ValueError("non-finite (NaN or inf) atomic coordinates")


def canonical_structure(structure: Structure, niggli: bool = True) -> Structure:
    """CDVAE's canonical form: Niggli-reduce (optional), then rebuild the lattice from its
    six parameters with ``Lattice.from_parameters``, keeping species and fractional
    coordinates (as in CDVAE's ``build_crystal`` with ``primitive=False``).

    Raises:
        ValueError: the structure fails :func:`check_structure`, or Niggli reduction fails.
    """
    check_structure(structure)
    if niggli:
        try:
            structure = structure.get_reduced_structure(reduction_algo="niggli")
        except Exception as err:  # noqa: BLE001 - pymatgen raises several types on degenerate cells
            raise ValueError(f"Niggli reduction failed ({type(err).__name__}: {err})") from None
    lattice = Lattice.from_parameters(*structure.lattice.parameters)
    return Structure(lattice, structure.species, structure.frac_coords, coords_are_cartesian=False)


def structure_to_arrays(structure: Structure) -> CrystalRecord:
    """Shared-representation arrays of a structure, fractional coordinates wrapped to [0, 1).

    Raises:
        ValueError: see :func:`check_structure`.

    Example:
        >>> po = Structure(Lattice.cubic(3.35), ["Po"], [[1.0, -0.5, 0.25]])
        >>> rec = structure_to_arrays(po)
        >>> rec.atomic_numbers.tolist(), rec.frac_coords.tolist(), rec.lengths.tolist(), rec.angles.tolist()
        ([84], [[0.0, 0.5, 0.25]], [3.35, 3.35, 3.35], [90.0, 90.0, 90.0])
    """
    check_structure(structure)
    z = np.array([site.specie.Z for site in structure], dtype=np.int64)
    lat = structure.lattice
    return CrystalRecord(z, wrap_frac(np.asarray(structure.frac_coords, np.float64)),
                         np.asarray(lat.abc, np.float64), np.asarray(lat.angles, np.float64))


def _float_array(value: object, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numbers, got {type(value).__name__} ({e})") from None


def structure_from_arrays(atomic_numbers: Sequence[int] | np.ndarray, frac_coords: Sequence | np.ndarray,
                          lengths: Sequence[float] | np.ndarray, angles: Sequence[float] | np.ndarray) -> Structure:
    """Build a pymatgen ``Structure`` from shared-representation arrays (CPU tensors work too).

    The lattice is ``Lattice.from_parameters(*lengths, *angles)`` (the canonical orientation).

    Args:
        atomic_numbers: ``(N,)`` atomic numbers 1..118 (or element symbols).
        frac_coords: ``(N, 3)`` fractional coordinates (not wrapped here).
        lengths: ``(3,)`` lattice lengths a, b, c in Angstrom.
        angles: ``(3,)`` lattice angles alpha, beta, gamma in degrees.

    Raises:
        ValueError: wrong shapes, unknown elements, zero atoms, non-finite values, or an
            impossible lattice (non-positive lengths, angles outside (0, 180), zero volume).
    """
    z = to_atomic_numbers(np.asarray(atomic_numbers).reshape(-1).tolist())
    if z.size == 0:
        raise ValueError("the structure has zero atoms; a crystal needs at least one")
    frac, lengths, angles = (_float_array(v, name) for v, name in ((frac_coords, "frac_coords"),
                                                                    (lengths, "lengths"), (angles, "angles")))
    if frac.shape != (len(z), 3):
        raise ValueError(f"frac_coords must have shape (N, 3) = ({len(z)}, 3) like the atoms, got {frac.shape}")
    if not np.isfinite(frac).all():
        raise ValueError("frac_coords contain NaN or inf; drop or regenerate this crystal")
    lengths, angles = lengths.reshape(-1), angles.reshape(-1)
    if lengths.shape != (3,) or angles.shape != (3,):
        raise ValueError(f"lengths and angles must have 3 values each, got shapes {lengths.shape} and {angles.shape}")
    problem = _check_lattice(lengths, angles)
    if problem:
        raise ValueError(problem)
    lattice = Lattice.from_parameters(*lengths.tolist(), *angles.tolist())
    return Structure(lattice, [Element.from_Z(int(a)) for a in z], frac, coords_are_cartesian=False)


def structure_to_ase(structure: Structure) -> ase.Atoms:
    """ASE ``Atoms`` with the structure's cell, scaled positions and ``pbc=True``.

    Raises:
        ValueError: see :func:`check_structure`.
    """
    from ase import Atoms as AseAtoms

    check_structure(structure)
    return AseAtoms(numbers=[site.specie.Z for site in structure], cell=structure.lattice.matrix,
                    scaled_positions=structure.frac_coords, pbc=True)


def ase_to_structure(atoms: ase.Atoms) -> Structure:
    """pymatgen ``Structure`` of a periodic ASE ``Atoms`` (same cell, same fractional coordinates).

    Raises:
        ValueError: not periodic in all three directions (a molecule), or the result fails
            :func:`check_structure`.
    """
    from ase import Atoms as AseAtoms

    if not isinstance(atoms, AseAtoms):
        raise ValueError(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if not np.all(atoms.pbc):
        raise ValueError(f"the ASE Atoms is not periodic in all directions (pbc={atoms.pbc.tolist()}); "
                         "a crystal needs pbc=True and a 3-D cell")
    cell = np.asarray(atoms.cell.array, np.float64)
    if not np.isfinite(cell).all() or abs(np.linalg.det(cell)) <= 0:
        raise ValueError(f"the cell has non-positive volume or non-finite entries: {cell.tolist()}")
    numbers = np.asarray(atoms.numbers)
    if (numbers < 1).any() or (numbers > 118).any():
        raise ValueError(f"unknown element: atomic numbers must lie in 1..118, got {numbers.tolist()}")
    s = Structure(Lattice(cell), [Element.from_Z(int(a)) for a in numbers],
                  atoms.get_scaled_positions(wrap=False), coords_are_cartesian=False)
    check_structure(s)
    return s


# ----------------------------------------------------------------------------- CIF
def _cif_number(value: object) -> float:
    """A CIF numeric value, uncertainty in brackets dropped: ``"5.64(2)"`` -> 5.64."""
    text = str(value).strip()
    if "(" in text:
        text = text[:text.index("(")]
    return float(text)  # "nan", "inf" parse; "?" and "." raise ValueError


def _diagnose_block(block) -> str | None:
    """Why a CIF data block cannot give a crystal, checked before pymatgen sees it (pymatgen
    silently takes |length| and reports other problems only as warnings)."""
    d = block.data
    params = []
    for key in ("_cell_length_a", "_cell_length_b", "_cell_length_c",
                "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma"):
        if key not in d:
            return f"missing {key}"
        try:
            params.append(_cif_number(d[key]))
        except ValueError:
            return f"{key} is not a number: {d[key]!r}"
    problem = _check_lattice(np.array(params[:3]), np.array(params[3:]))
    if problem:
        return problem
    coords = [k for k in ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z") if k in d]
    cart = [k for k in ("_atom_site_Cartn_x", "_atom_site_Cartn_y", "_atom_site_Cartn_z") if k in d]
    keys = coords if coords else cart
    if not keys:
        return "no atom sites (no _atom_site_fract_x/y/z loop): the structure has zero atoms"
    if len(keys) < 3:
        return f"incomplete atom site coordinates: only {keys}"
    columns = [d[k] if isinstance(d[k], list) else [d[k]] for k in keys]
    if min(len(c) for c in columns) == 0:
        return "the atom site loop is empty: the structure has zero atoms"
    for k, column in zip(keys, columns):
        for i, v in enumerate(column):
            try:
                x = _cif_number(v)
            except ValueError:
                return f"atom site {i}: {k} is not a number: {v!r}"
            if not math.isfinite(x):
                return f"atom site {i}: {k} is {v!r}; NaN or inf coordinates"
    return None


def _formula_problem(block, structure: Structure) -> str | None:
    """How the atom sites disagree with the block's ``_chemical_formula_sum``, or None.

    The formula is taken as the cell content (pymatgen's and ASE's writers) or, times
    ``_cell_formula_units_Z``, as one formula unit (IUCr convention); without ``Z``, equal
    reduced formulas also pass. A missing or unparsable formula is not checked. This is
    what catches an atom loop cut at a row boundary, which is otherwise a valid CIF.
    """
    from pymatgen.core import Composition

    declared = block.data.get("_chemical_formula_sum")
    if not isinstance(declared, str) or not declared.strip("'\" ?."):
        return None
    try:
        formula = Composition(declared.strip("'\" ")).element_composition
    except Exception:  # noqa: BLE001 - an unparsable optional field is not checked
        return None
    if formula.num_atoms <= 0:
        return None
    sites = structure.composition.element_composition
    candidates = [formula]
    try:
        z = int(_cif_number(block.data.get("_cell_formula_units_Z", "")))
    except (TypeError, ValueError, OverflowError):
        z = None
    if z is not None and z > 0:
        candidates.append(formula * z)
    if any(sites.almost_equals(c, rtol=0.0, atol=1e-3) for c in candidates):
        return None
    if z is None and sites.reduced_formula == formula.reduced_formula:
        return None
    return (f"the atom sites give {sites.formula} but _chemical_formula_sum is {declared.strip()}"
            + (f" (Z = {z})" if z is not None else ""))


def parse_cif(text: str, path: PathLike = "<string>") -> list[Structure]:
    """Structures of every data block of a CIF text, in file order, as written (no reduction).

    pymatgen's CIF parser turns most problems into warnings and skips the block; here each
    problem raises, with the block and the reason. pymatgen's warnings are suppressed.

    Args:
        text: the CIF content.
        path: label used in error messages (the file name).

    Raises:
        CrystalFileError: empty text, no data block with a unit cell, a block with a
            missing/non-numeric/non-positive cell parameter, angles outside (0, 180), zero
            atoms, non-numeric or NaN coordinates, unknown elements, disordered sites, atom
            sites that disagree with ``_chemical_formula_sum`` (a truncated atom loop).
    """
    from pymatgen.io.cif import CifFile, CifParser

    if not text or not text.strip():
        raise CrystalFileError(path, "empty CIF", fix="the writer may have failed; regenerate it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            blocks = list(CifFile.from_str(text).data.values())
        except Exception as err:  # noqa: BLE001 - pymatgen's tokenizer raises assorted types
            raise CrystalFileError(path, f"malformed CIF ({type(err).__name__}: {err})") from None
        if not blocks:
            raise CrystalFileError(path, "malformed CIF: no data_ block", fix="check that this is a CIF file")
        # Blocks without a cell are not structures (e.g. a global header block); a CIF must have one.
        with_cell = [(i, b) for i, b in enumerate(blocks) if any(k.startswith("_cell_") for k in b.data)]
        if not with_cell:
            raise CrystalFileError(path, "malformed CIF: no data block has a unit cell (_cell_length_a ...)",
                                   fix="check that this is a crystal CIF file")
        for i, block in with_cell:
            problem = _diagnose_block(block)
            if problem:
                raise CrystalFileError(path, problem, record=i)
        try:
            parser = CifParser(io.StringIO(text))
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as err:  # noqa: BLE001
            raise CrystalFileError(path, f"pymatgen could not build a structure ({type(err).__name__}: {err})"
                                   ) from None
    if len(structures) != len(with_cell):
        raise CrystalFileError(path, f"{len(with_cell)} data blocks with a cell but pymatgen built "
                               f"{len(structures)} structures")
    for (i, block), s in zip(with_cell, structures):
        try:
            check_structure(s)
        except ValueError as err:
            raise CrystalFileError(path, str(err), record=i) from None
        problem = _formula_problem(block, s)
        if problem:
            raise CrystalFileError(path, problem, record=i,
                                   fix="the atom site loop may be truncated; regenerate the file or fix the formula")
    return structures


def _read_text(path: PathLike) -> tuple[Path, str]:
    path = Path(path)
    if path.is_dir():
        raise CrystalFileError(path, "is a folder, not a file", fix="give the file's path (read_crystals reads folders)")
    if not path.is_file():
        raise CrystalFileError(path, "file does not exist", fix="check the path")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise CrystalFileError(path, "file is empty", fix="the writer may have failed; regenerate it")
    return path, text


def read_cif(path: PathLike) -> list[Structure]:
    """Every structure (data block) of a CIF file; see :func:`parse_cif` for the errors."""
    path, text = _read_text(path)
    return parse_cif(text, path)


def _as_structures(structures: Structure | Iterable[Structure], path: PathLike) -> list[Structure]:
    items = [structures] if isinstance(structures, Structure) else list(structures)
    if not items:
        raise ValueError(f"no structures to write to {path}; an empty file could not be read back")
    for i, s in enumerate(items):
        try:
            check_structure(s)
        except ValueError as err:
            raise ValueError(f"structure {i} cannot be written to {path}: {err}") from None
    return items


def _cif_text(structure: Structure, name: str | None, symprec: float | None) -> str:
    from pymatgen.io.cif import CifWriter

    labels = [site.label for site in structure]
    if len(set(labels)) != len(labels):  # CIF requires unique site labels (CifWriter warns otherwise)
        structure = structure.copy().relabel_sites(ignore_uniq=True)
    text = str(CifWriter(structure, symprec=symprec))
    if name is not None:  # unique block names: pymatgen keys blocks by name and drops repeats
        lines = text.splitlines()
        k = next(j for j, line in enumerate(lines) if line.startswith("data_"))
        lines[k] = f"data_{name}"
        text = "\n".join(lines) + "\n"
    return text


def write_cif(path: PathLike, structures: Structure | Iterable[Structure], symprec: float | None = None) -> Path:
    """Write one or more structures to a CIF file (one data block each), atomically.

    Blocks are named ``data_<i>_<reduced formula>`` when there are several, so that every
    block survives reading (pymatgen drops blocks with repeated names).

    Args:
        path: output file.
        structures: a ``Structure`` or an iterable of them.
        symprec: ``None`` writes P1 (all sites, as CDVAE's CSVs); a tolerance writes the
            symmetrized cell found by pymatgen's ``CifWriter`` with that ``symprec``.

    Raises:
        ValueError: no structures, or one fails :func:`check_structure` (nothing is written).
    """
    items = _as_structures(structures, path)
    many = len(items) > 1
    text = "".join(_cif_text(s, f"{i}_{s.composition.reduced_formula}" if many else None, symprec)
                   for i, s in enumerate(items))
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_cif_dir(directory: PathLike, structures: Iterable[Structure], overwrite: bool = False,
                  symprec: float | None = None) -> Path:
    """Write each structure to ``directory/<i:06d>.cif``; the folder appears complete or not at all.

    Raises:
        ValueError: no structures, or one fails :func:`check_structure`.
        FileExistsError: ``directory`` exists and ``overwrite`` is False.
    """
    items = _as_structures(structures, directory)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        for i, s in enumerate(items):
            (tmp / f"{i:06d}.cif").write_text(_cif_text(s, None, symprec))
    return Path(directory)


# -------------------------------------------------------------------------- extxyz
def write_extxyz(path: PathLike, structures: Structure | Iterable[Structure]) -> Path:
    """Write structures as a multi-frame extended XYZ file (``Lattice=`` and ``pbc`` per frame), atomically.

    Raises:
        ValueError: no structures, or one fails :func:`check_structure` (nothing is written).
    """
    from ase.io import write as ase_write

    frames = [structure_to_ase(s) for s in _as_structures(structures, path)]
    return atomic_write(path, lambda tmp: ase_write(str(tmp), frames, format="extxyz"))


def _check_xyz_layout(path: Path) -> None:
    """Check the frame layout (count line, comment, atom lines) before ASE reads the file:
    ASE loops over a count line by line however large it is, and silently drops a
    truncated last frame and every frame after a blank line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    i = frame = 0
    fix = "the file may be truncated or not extended XYZ; regenerate it"
    while i < len(lines):
        if not lines[i].strip():
            rest = next((k for k in range(i, len(lines)) if lines[k].strip()), None)
            if rest is None:
                return
            raise CrystalFileError(path, f"blank line {i + 1} before frame {frame}; ASE would ignore the frames "
                                   "after it", record=frame, fix="remove the blank lines between frames")
        try:
            n = int(lines[i])
        except ValueError:
            raise CrystalFileError(path, f"line {i + 1}: expected an atom count, got {lines[i].strip()[:40]!r}",
                                   record=frame, fix=fix) from None
        if n < 0:
            raise CrystalFileError(path, f"line {i + 1}: negative atom count {n}", record=frame, fix=fix)
        if i + 2 + n > len(lines):
            raise CrystalFileError(path, f"truncated frame: line {i + 1} says {n} atoms but only "
                                   f"{max(len(lines) - i - 2, 0)} lines follow the comment", record=frame, fix=fix)
        i += 2 + n
        while i < len(lines) and lines[i].lstrip().startswith("VEC"):
            i += 1
        frame += 1


def extxyz_frames(path: Path) -> list:
    """All frames of an extended XYZ file as ASE ``Atoms`` (no checks on their content).

    Raises:
        CrystalFileError: a file ASE cannot parse: bad or huge atom count, truncated frame,
            blank line between frames (ASE would stop there), malformed comment or atom lines.
    """
    from ase.io import read as ase_read

    _check_xyz_layout(Path(path))
    try:
        return ase_read(str(path), index=":", format="extxyz")
    except Exception as err:  # noqa: BLE001 - ASE raises assorted types on malformed files
        raise CrystalFileError(path, f"malformed extxyz ({type(err).__name__}: {err})",
                               fix='each frame needs an atom count, a comment with Lattice="..." and atom lines'
                               ) from None


def frame_to_structure(atoms) -> Structure:
    """One extxyz frame as a ``Structure``.

    Raises:
        ValueError: zero atoms, NaN/inf coordinates, or what :func:`ase_to_structure` rejects.
    """
    if len(atoms) == 0:
        raise ValueError("the frame has zero atoms")
    if not np.isfinite(atoms.positions).all():
        raise ValueError("NaN or inf coordinates")
    return ase_to_structure(atoms)


def read_extxyz(path: PathLike) -> list[Structure]:
    """Every frame of an extended XYZ file as a ``Structure``; frames must be periodic.

    Raises:
        CrystalFileError: missing or empty file, a folder, a file ASE cannot parse (see
            :func:`extxyz_frames`), a frame without a 3-D periodic cell, zero atoms,
            unknown elements, NaN coordinates.
    """
    path, _ = _read_text(path)
    out = []
    for i, atoms in enumerate(extxyz_frames(path)):
        try:
            out.append(frame_to_structure(atoms))
        except ValueError as err:
            raise CrystalFileError(path, str(err), record=i) from None
    return out


def read_crystals(path: PathLike) -> list[Structure]:
    """Structures from a ``.cif`` file, an ``.extxyz``/``.xyz`` file, or a folder of ``.cif`` files
    (sorted by name, all blocks of each).

    Raises:
        CrystalFileError: unknown extension, an empty folder, or any error of the readers.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".cif")
        if not files:
            raise CrystalFileError(path, "the folder holds no .cif files", fix="point to a CIF folder or file")
        return [s for f in files for s in read_cif(f)]
    suffix = path.suffix.lower()
    if suffix == ".cif":
        return read_cif(path)
    if suffix in (".extxyz", ".xyz"):
        return read_extxyz(path)
    raise CrystalFileError(path, f"unknown extension {path.suffix!r}",
                           fix="use .cif, .extxyz or a folder of .cif files")

