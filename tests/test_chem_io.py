"""Molecule files: atomic writes, XYZ/SDF round trips, and every documented bad input."""
import os

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdDistGeom

from dit3d.chem import (MoleculeFileError, MoleculeRecord, atomic_number, atomic_output, atomic_write,
                        element_symbol, mol_from_coords, read_molecules, read_sdf, read_xyz, to_atomic_numbers,
                        write_sdf, write_xyz)

WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.2404, 0.9294, 0.0]]))
ETHYLENE = (np.array([6, 6, 1, 1, 1, 1]),
            np.array([[0.0, 0, 0], [1.33, 0, 0], [-0.545, 0.944, 0], [-0.545, -0.944, 0],
                      [1.875, 0.944, 0], [1.875, -0.944, 0]]))
PENTAVALENT_C = (np.array([6, 1, 1, 1, 1, 1]),
                 np.array([[0.0, 0, 0], [1.09, 0, 0], [-1.09, 0, 0], [0, 1.09, 0], [0, -1.09, 0], [0, 0, 1.09]]))


def test_element_helpers():
    assert atomic_number("C") == 6 and atomic_number("cl") == 17 and atomic_number("BR") == 35
    assert element_symbol(1) == "H" and element_symbol(np.int64(118)) == "Og"
    for bad in ("Xx", "D", "*", ""):
        with pytest.raises(ValueError, match="unknown element"):
            atomic_number(bad)
    for bad in (0, -1, 119, 6.5, True, None, float("nan")):
        with pytest.raises(ValueError, match="not an element"):
            element_symbol(bad)
    assert to_atomic_numbers(["C", 8, "H"]).tolist() == [6, 8, 1]
    with pytest.raises(ValueError):
        to_atomic_numbers([[6, 1]])


def test_atomic_write_success_and_failure_leave_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, lambda p: p.write_text("old"))
    assert target.read_text() == "old"

    def broken(p):
        p.write_text("half written")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        atomic_write(target, broken)
    assert target.read_text() == "old"  # untouched
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]  # the temp file was deleted

    with pytest.raises(KeyError):
        with atomic_output(tmp_path / "new.txt") as tmp:
            tmp.write_text("x")
            raise KeyError("boom")
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write(tmp_path / "missing_dir" / "x.txt", lambda p: None)


def test_atomic_write_gives_normal_permissions(tmp_path):
    target = atomic_write(tmp_path / "p.txt", lambda p: p.write_text("x"))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_xyz_round_trip_multi_frame(tmp_path):
    path = write_xyz(tmp_path / "m.xyz", [(*WATER, "water"), ETHYLENE, MoleculeRecord(*WATER, "again")])
    recs = read_xyz(path)
    assert [r.comment for r in recs] == ["water", "", "again"]
    for rec, (z, pos) in zip(recs, [WATER, ETHYLENE, WATER]):
        assert rec.atomic_numbers.dtype == np.int64 and rec.atomic_numbers.tolist() == z.tolist()
        np.testing.assert_allclose(rec.positions, pos, atol=1e-9)
    assert [r.atomic_numbers.tolist() for r in read_molecules(path)] == [WATER[0].tolist(), ETHYLENE[0].tolist(),
                                                                        WATER[0].tolist()]


def test_xyz_reader_accepts_numbers_case_blank_lines_and_extra_columns(tmp_path):
    p = tmp_path / "ok.xyz"
    p.write_text("2\n\nCL 0 0 0 0.1\n1 0 0 1.3\n\n\n1\ncomment\no 1 2 3\n\n")
    recs = read_xyz(p)
    assert [r.atomic_numbers.tolist() for r in recs] == [[17, 1], [8]]


def test_write_xyz_rejects_bad_molecules_and_writes_nothing(tmp_path):
    nan_pos = WATER[1].copy()
    nan_pos[1, 0] = np.nan
    for bad, match in [([(WATER[0], nan_pos)], "NaN"), ([(WATER[0], WATER[1][:2])], "shape"),
                       ([(np.array([0, 1, 1]), WATER[1])], "not an element"), ([(*WATER, "two\nlines")], "one line"),
                       ([], "no molecules")]:
        with pytest.raises(ValueError, match=match):
            write_xyz(tmp_path / "bad.xyz", bad)
    assert os.listdir(tmp_path) == []


BAD_XYZ = {
    "bad count": ("x\n\nC 0 0 0\n", "positive atom count", 1),
    "zero count": ("0\n\n", "positive atom count", 1),
    # The extra atom line is read where the next count should be: reported as record 2.
    "count too small": ("1\n\nC 0 0 0\nH 1 0 0\n", "positive atom count", 4),
    "truncated": ("3\n\nC 0 0 0\nH 1 0 0\n", "truncated frame", 1),
    "no comment line": ("1", "truncated frame", 1),
    "few columns": ("2\n\nC 0 0 0\nH 1 0\n", "symbol x y z", 4),
    "non-numeric": ("1\n\nC 0 zero 0\n", "non-numeric", 3),
    "unknown element": ("1\n\nXx 0 0 0\n", "unknown element", 3),
    "atomic number 0": ("1\n\n0 0 0 0\n", "unknown element", 3),
    "huge atomic number": ("1\n\n99999999999999999999 0 0 0\n", "unknown element", 3),
    "nan": ("1\n\nC 0 nan 0\n", "non-finite", 3),
    "inf": ("2\n\nC 0 0 0\nH inf 0 0\n", "non-finite", 4),
}


@pytest.mark.parametrize("case", sorted(BAD_XYZ))
def test_bad_xyz_raises_with_file_record_and_line(tmp_path, case):
    text, match, line = BAD_XYZ[case]
    p = tmp_path / "bad.xyz"
    p.write_text("1\nfirst\nH 0 0 0\n" + text)  # a good frame first: the bad one is record 1
    with pytest.raises(MoleculeFileError, match=match) as e:
        read_molecules(p)
    assert e.value.record == (2 if case == "count too small" else 1) and e.value.line == line + 3
    assert str(p) in str(e.value) and isinstance(e.value, ValueError)


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(MoleculeFileError, match="does not exist"):
        read_molecules(tmp_path / "nope.xyz")
    for name in ("e.xyz", "e.sdf"):
        (tmp_path / name).write_text("  \n")
        with pytest.raises(MoleculeFileError, match="empty"):
            read_molecules(tmp_path / name)
    (tmp_path / "m.pdb").write_text("x")
    with pytest.raises(MoleculeFileError, match="unknown extension"):
        read_molecules(tmp_path / "m.pdb")


def test_sdf_round_trip_keeps_conformers_hydrogens_and_invalid_molecules(tmp_path):
    good = mol_from_coords(*ETHYLENE)
    bad = mol_from_coords(*PENTAVALENT_C, method="edm")  # five bonds on carbon: fails sanitisation
    good.SetProp("_Name", "ethylene")
    path = write_sdf(tmp_path / "m.sdf", [good, bad])
    mols = read_sdf(path)
    assert len(mols) == 2 and all(m is not None for m in mols)
    assert [m.GetNumAtoms() for m in mols] == [6, 6]  # hydrogens kept
    assert mols[1].GetAtomWithIdx(0).GetDegree() == 5
    np.testing.assert_allclose(mols[0].GetConformer().GetPositions(), ETHYLENE[1], atol=1e-4)
    recs = read_molecules(path)
    assert recs[0].comment == "ethylene" and recs[0].mol is not None
    assert recs[1].atomic_numbers.tolist() == PENTAVALENT_C[0].tolist()
    with pytest.raises(ValueError, match="not an RDKit Mol"):
        write_sdf(tmp_path / "x.sdf", [good, None])


def test_sdf_aromatic_molecule_is_written_kekulized(tmp_path):
    mol = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1"))
    rdDistGeom.EmbedMolecule(mol, randomSeed=0)
    back = read_sdf(write_sdf(tmp_path / "b.sdf", [mol]))[0]
    types = sorted(str(b.GetBondType()) for b in back.GetBonds() if b.GetBeginAtom().GetAtomicNum() == 6
                   and b.GetEndAtom().GetAtomicNum() == 6)
    assert types == ["DOUBLE"] * 3 + ["SINGLE"] * 3  # Kekule form, no V2000 aromatic bond type 4
    assert Chem.MolToSmiles(Chem.RemoveHs(back)) == "c1ccccc1"


def _sdf_with(tmp_path, old, new):
    path = write_sdf(tmp_path / "m.sdf", [mol_from_coords(*WATER), mol_from_coords(*ETHYLENE)])
    text = path.read_text()
    head, sep, tail = text.partition("$$$$\n")
    path.write_text(head + sep + tail.replace(old, new, 1))  # damage record 1 only
    return path


@pytest.mark.parametrize("old,new,match", [
    (" C ", " Xx", "unknown element"),
    ("    0.0000 C", "       nan C", "non-finite"),
    ("    0.0000 C", "      zero C", "non-numeric"),
])
def test_bad_sdf_record_is_named(tmp_path, old, new, match):
    path = _sdf_with(tmp_path, old, new)
    mols = read_sdf(path)
    assert mols[0] is not None and mols[1] is None  # recorded as a failed record
    with pytest.raises(MoleculeFileError, match=match) as e:
        read_molecules(path)
    assert e.value.record == 1 and e.value.line is not None


def test_unparseable_sdf(tmp_path):
    p = tmp_path / "g.sdf"
    p.write_text("garbage\nmore garbage\n")
    with pytest.raises(MoleculeFileError):
        read_molecules(p)
