"""Crystal conversions and files: arrays <-> Structure <-> ASE, CIF and extxyz round trips, bad input."""
from __future__ import annotations

import os

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dit3d.chem import (CrystalFileError, ase_to_structure, canonical_structure, parse_cif, read_cif, read_crystals,
                        read_extxyz, structure_from_arrays, structure_to_arrays, structure_to_ase, write_cif,
                        write_cif_dir, write_extxyz)

from cifs import NACL_CIF  # tests/ is on sys.path under pytest's default import mode

def triclinic() -> Structure:
    """A low-symmetry 3-atom cell, so round trips cannot pass by symmetry alone."""
    return Structure(Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.0, 104.0), ["Si", "O", "O"],
                     [[0.1, 0.2, 0.3], [0.45, 0.05, 0.9], [0.8, 0.6, 0.15]])


def same_structure(a: Structure, b: Structure, atol: float = 1e-6) -> None:
    assert [s.specie.Z for s in a] == [s.specie.Z for s in b]
    np.testing.assert_allclose(a.lattice.matrix, b.lattice.matrix, atol=atol)
    d = a.frac_coords - b.frac_coords
    np.testing.assert_allclose(d - np.round(d), 0, atol=atol)


def test_hand_written_cif_parses():
    (s,) = parse_cif(NACL_CIF)
    assert len(s) == 8 and s.composition.reduced_formula == "NaCl"
    assert s.lattice.abc == pytest.approx((5.64,) * 3) and s.lattice.angles == pytest.approx((90.0,) * 3)


def test_arrays_structure_round_trip():
    s = triclinic()
    rec = structure_to_arrays(s)
    assert rec.atomic_numbers.tolist() == [14, 8, 8] and rec.frac_coords.shape == (3, 3)
    assert rec.lengths.tolist() == pytest.approx([4.1, 5.3, 6.2])
    assert rec.angles.tolist() == pytest.approx([81, 97, 104])
    back = structure_from_arrays(*rec)
    same_structure(back, s)  # same parameters -> from_parameters gives the same matrix
    # fractional coordinates are wrapped into [0, 1), never to 1.0
    wrapped = structure_to_arrays(Structure(s.lattice, ["Si"], [[-1e-17, 1.0, -0.25]])).frac_coords
    assert wrapped.tolist() == [[0.0, 0.0, 0.75]]
    # torch tensors are accepted, as models produce them
    torch = pytest.importorskip("torch")
    t = structure_from_arrays(torch.tensor(rec.atomic_numbers), torch.tensor(rec.frac_coords),
                              torch.tensor(rec.lengths), torch.tensor(rec.angles))
    same_structure(t, s)


def test_canonical_structure_is_orientation_free():
    s = triclinic()
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    sheared = s.copy()
    sheared.make_supercell([[1, 0, 0], [0, 1, 0], [1, 1, 1]])  # same cell, another basis
    assert not np.allclose(sheared.lattice.abc, s.lattice.abc)
    canon = [canonical_structure(x) for x in (s, rotated, sheared)]
    for c in canon[1:]:
        np.testing.assert_allclose(c.lattice.matrix, canon[0].lattice.matrix, atol=1e-8)
        assert c.matches(canon[0])


def test_structure_ase_round_trip():
    s = triclinic()
    atoms = structure_to_ase(s)
    assert atoms.pbc.all() and atoms.get_chemical_symbols() == ["Si", "O", "O"]
    np.testing.assert_allclose(atoms.cell.array, s.lattice.matrix)
    np.testing.assert_allclose(atoms.get_scaled_positions(), s.frac_coords, atol=1e-12)
    same_structure(ase_to_structure(atoms), s, atol=1e-10)
    from ase import Atoms

    with pytest.raises(ValueError, match="not periodic"):
        ase_to_structure(Atoms("H2O", positions=np.zeros((3, 3))))
    with pytest.raises(ValueError, match="expected an ase.Atoms"):
        ase_to_structure(s)


def test_cif_file_round_trips(tmp_path):
    s, (nacl,) = triclinic(), parse_cif(NACL_CIF)
    one = write_cif(tmp_path / "one.cif", s)
    (back,) = read_cif(one)
    same_structure(back, s, atol=1e-7)  # CifWriter keeps 8 significant figures
    # several structures, same formula twice: each block keeps a unique name and survives
    many = write_cif(tmp_path / "many.cif", [s, nacl, s])
    got = read_cif(many)
    assert [len(x) for x in got] == [3, 8, 3]
    same_structure(got[2], s, atol=1e-7)
    # arrays -> Structure -> ASE -> Structure -> CIF -> Structure -> arrays
    rec = structure_to_arrays(s)
    via = ase_to_structure(structure_to_ase(structure_from_arrays(*rec)))
    (final,) = read_cif(write_cif(tmp_path / "via.cif", via))
    rec2 = structure_to_arrays(final)
    assert rec2.atomic_numbers.tolist() == rec.atomic_numbers.tolist()
    np.testing.assert_allclose(rec2.lengths, rec.lengths, atol=1e-6)
    np.testing.assert_allclose(rec2.angles, rec.angles, atol=1e-6)
    np.testing.assert_allclose(rec2.frac_coords, rec.frac_coords, atol=1e-7)


def test_cif_folder_and_extxyz_round_trip(tmp_path):
    s, (nacl,) = triclinic(), parse_cif(NACL_CIF)
    folder = write_cif_dir(tmp_path / "cifs", [s, nacl])
    assert sorted(p.name for p in folder.iterdir()) == ["000000.cif", "000001.cif"]
    assert [len(x) for x in read_crystals(folder)] == [3, 8]
    with pytest.raises(FileExistsError):
        write_cif_dir(folder, [s])
    path = write_extxyz(tmp_path / "x.extxyz", [s, nacl])
    got = read_extxyz(path)
    assert [len(x) for x in got] == [3, 8]
    same_structure(got[0], s, atol=1e-7)
    assert [len(x) for x in read_crystals(path)] == [3, 8]


BAD_CIFS = {
    "malformed": ("hello, I am not a CIF", "malformed CIF"),
    "empty": ("  \n", "empty"),
    "unknown element": (NACL_CIF.replace("Cl Cl1", "Qq Qq1"), "unknown element 'Qq'"),
    "nan coordinates": (NACL_CIF.replace("Cl Cl1 0.5 0.5", "Cl Cl1 nan 0.5"), "NaN or inf coordinates"),
    "zero atoms": (NACL_CIF.split("loop_")[0], "zero atoms"),
    "zero length": (NACL_CIF.replace("_cell_length_c 5.64", "_cell_length_c 0"), "non-positive lattice length"),
    "negative length": (NACL_CIF.replace("_cell_length_c 5.64", "_cell_length_c -5.64"), "non-positive lattice length"),
    "flat cell": (NACL_CIF.replace("_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90",
                                   "_cell_angle_alpha 120\n_cell_angle_beta 120\n_cell_angle_gamma 120"),
                  "degenerate lattice volume"),
    "absurd angle": (NACL_CIF.replace("_cell_angle_gamma 90", "_cell_angle_gamma 185"), r"outside \(0, 180\)"),
    "non-numeric": (NACL_CIF.replace("_cell_length_c 5.64", "_cell_length_c ?"), "not a number"),
    "partial occupancy": (NACL_CIF.replace("Cl Cl1 0.5 0.5 0.5 1", "Cl Cl1 0.5 0.5 0.5 0.5"), "partially occupied"),
}


@pytest.mark.parametrize("case", sorted(BAD_CIFS))
def test_bad_cif_files_raise_with_file_and_problem(tmp_path, case):
    text, problem = BAD_CIFS[case]
    path = tmp_path / "bad.cif"
    path.write_text(text)
    with pytest.raises(CrystalFileError, match=problem) as info:
        read_cif(path)
    assert str(path) in str(info.value)
    if case not in ("malformed", "empty"):
        assert info.value.record == 0  # the data block is named


def test_second_block_is_named(tmp_path):
    path = tmp_path / "two.cif"
    path.write_text(NACL_CIF + NACL_CIF.replace("data_NaCl", "data_B").replace("Cl Cl1 0.5", "Cl Cl1 nan"))
    with pytest.raises(CrystalFileError, match=r"\(block 1\).*NaN") as info:
        read_cif(path)
    assert info.value.record == 1


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(CrystalFileError, match="does not exist"):
        read_cif(tmp_path / "nope.cif")
    (tmp_path / "empty.cif").write_text("")
    with pytest.raises(CrystalFileError, match="empty"):
        read_cif(tmp_path / "empty.cif")
    (tmp_path / "x.pdb").write_text("ATOM")
    with pytest.raises(CrystalFileError, match="unknown extension"):
        read_crystals(tmp_path / "x.pdb")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CrystalFileError, match="no .cif files"):
        read_crystals(tmp_path / "nothing")
    (tmp_path / "bad.extxyz").write_text("2\nLattice=\"1 0 0 0 1 0 0 0 1\"\nH 0 0\n")
    with pytest.raises(CrystalFileError, match="bad.extxyz"):
        read_extxyz(tmp_path / "bad.extxyz")
    (tmp_path / "mol.xyz").write_text("1\n\nH 0 0 0\n")  # plain XYZ: no cell, not a crystal
    with pytest.raises(CrystalFileError, match="not periodic"):
        read_extxyz(tmp_path / "mol.xyz")


def test_structure_from_arrays_rejects_bad_input():
    frac = np.zeros((1, 3))
    with pytest.raises(ValueError, match="zero atoms"):
        structure_from_arrays([], np.zeros((0, 3)), [3, 3, 3], [90, 90, 90])
    with pytest.raises(ValueError, match="shape"):
        structure_from_arrays([1, 1], frac, [3, 3, 3], [90, 90, 90])
    with pytest.raises(ValueError, match="NaN"):
        structure_from_arrays([1], np.full((1, 3), np.nan), [3, 3, 3], [90, 90, 90])
    with pytest.raises(ValueError, match="not an element"):
        structure_from_arrays([0], frac, [3, 3, 3], [90, 90, 90])
    with pytest.raises(ValueError, match="non-positive lattice length"):
        structure_from_arrays([1], frac, [3, 0, 3], [90, 90, 90])
    with pytest.raises(ValueError, match="degenerate"):
        structure_from_arrays([1], frac, [3, 3, 3], [120, 120, 120])
    with pytest.raises(ValueError, match="non-finite"):
        structure_from_arrays([1], frac, [3, np.nan, 3], [90, 90, 90])


def test_writers_refuse_bad_structures_and_leave_no_files(tmp_path):
    good = triclinic()
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    target = tmp_path / "out.cif"
    write_cif(target, good)
    before = target.read_text()
    for writer, name in ((write_cif, "out.cif"), (write_extxyz, "out.extxyz")):
        with pytest.raises(ValueError, match="structure 1 .*partially occupied"):
            writer(tmp_path / name, [good, disordered])
        with pytest.raises(ValueError, match="no structures"):
            writer(tmp_path / name, [])
    with pytest.raises(ValueError, match="partially occupied"):
        write_cif_dir(tmp_path / "dir", [good, disordered])
    assert target.read_text() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["out.cif"]  # no temp files, no partial outputs
