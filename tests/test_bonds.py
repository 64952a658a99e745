"""Bond perception: EDM's bond-length rule and RDKit's determination from 3D."""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from dit3d.chem import (BOND_PERCEPTION_PROP, EDM_DOUBLE_BOND_PM, EDM_MARGINS_PM, EDM_SINGLE_BOND_PM,
                        EDM_TRIPLE_BOND_PM, atomic_number, edm_bond_matrix, edm_bond_order, mol_from_coords)

_T = 1.09 / np.sqrt(3)
METHANE = ([6, 1, 1, 1, 1], [[0, 0, 0], [_T, _T, _T], [-_T, -_T, _T], [-_T, _T, -_T], [_T, -_T, -_T]])
ETHYLENE = ([6, 6, 1, 1, 1, 1], [[0, 0, 0], [1.33, 0, 0], [-0.545, 0.944, 0], [-0.545, -0.944, 0],
                                 [1.875, 0.944, 0], [1.875, -0.944, 0]])
ACETYLENE = ([6, 6, 1, 1], [[0, 0, 0], [1.20, 0, 0], [-1.06, 0, 0], [2.26, 0, 0]])
PENTAVALENT_C = ([6, 1, 1, 1, 1, 1], [[0, 0, 0], [1.09, 0, 0], [-1.09, 0, 0], [0, 1.09, 0], [0, -1.09, 0], [0, 0, 1.09]])
METHYL = ([6, 1, 1, 1], [[0, 0, 0], [1.09, 0, 0], [-0.545, 0.944, 0], [-0.545, -0.944, 0]])


def test_tables_hold_the_published_values_and_are_symmetric():
    # Spot checks against EDM's qm9/bond_analyze.py (lengths in pm).
    assert EDM_SINGLE_BOND_PM["C", "H"] == 109 and EDM_SINGLE_BOND_PM["O", "H"] == 96
    assert EDM_SINGLE_BOND_PM["C", "C"] == 154 and EDM_SINGLE_BOND_PM["I", "I"] == 266
    assert EDM_DOUBLE_BOND_PM["C", "O"] == 120 and EDM_DOUBLE_BOND_PM["S", "C"] == 160
    assert EDM_TRIPLE_BOND_PM["N", "N"] == 110 and EDM_TRIPLE_BOND_PM["N", "C"] == 116
    assert EDM_MARGINS_PM == {1: 10, 2: 5, 3: 3}
    assert len(EDM_SINGLE_BOND_PM) == 2 * 64 - 11  # 64 pairs, 11 of them homonuclear
    for table in (EDM_SINGLE_BOND_PM, EDM_DOUBLE_BOND_PM, EDM_TRIPLE_BOND_PM):
        for (a, b), length in table.items():
            assert table[b, a] == length


def test_thresholds_are_nested_so_triple_first_equals_edm_order():
    for pair, l2 in EDM_DOUBLE_BOND_PM.items():
        assert l2 + EDM_MARGINS_PM[2] < EDM_SINGLE_BOND_PM[pair] + EDM_MARGINS_PM[1], pair
    for pair, l3 in EDM_TRIPLE_BOND_PM.items():
        assert l3 + EDM_MARGINS_PM[3] < EDM_DOUBLE_BOND_PM[pair] + EDM_MARGINS_PM[2], pair


@pytest.mark.parametrize("pair,d,order", [
    ((6, 6), 1.63, 1), ((6, 6), 1.65, 0), ((6, 6), 1.38, 2), ((6, 6), 1.40, 1), ((6, 6), 1.22, 3),
    ((6, 6), 1.24, 2), ((6, 8), 1.24, 2), ((6, 8), 1.15, 3), ((8, 6), 1.24, 2), ((1, 1), 0.83, 1),
    ((1, 1), 0.85, 0), ((7, 7), 1.12, 3), ((6, 9), 1.30, 1),  # C-F has no double bond entry
    ((6, 5), 1.50, 0),  # B-C is not tabulated: never a bond
    ((11, 17), 2.0, 0),  # Na-Cl neither
])
def test_edm_bond_order(pair, d, order):
    assert edm_bond_order(*pair, d) == order


def test_edm_bond_order_rejects_non_elements():
    with pytest.raises(ValueError, match="1..118"):
        edm_bond_order(0, 6, 1.5)


def test_edm_bond_matrix_of_small_molecules():
    for (z, pos), valence in [(METHANE, [4, 1, 1, 1, 1]), (ETHYLENE, [4, 4, 1, 1, 1, 1]), (ACETYLENE, [4, 4, 1, 1])]:
        m = edm_bond_matrix(z, np.array(pos))
        assert (m == m.T).all() and (np.diag(m) == 0).all() and m.dtype == np.int64
        assert m.sum(1).tolist() == valence
    assert edm_bond_matrix(*ETHYLENE)[0, 1] == 2 and edm_bond_matrix(*ACETYLENE)[0, 1] == 3
    assert edm_bond_matrix(["C", "H"], [[0, 0, 0], [1.09, 0, 0]]).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="NaN"):
        edm_bond_matrix([6, 1], [[0, 0, 0], [np.nan, 0, 0]])
    with pytest.raises(ValueError, match="shape"):
        edm_bond_matrix([6, 1], [[0, 0, 0]])


@pytest.mark.parametrize("mol,smiles", [(METHANE, "C"), (ETHYLENE, "C=C"), (ACETYLENE, "C#C")])
@pytest.mark.parametrize("method", ["rdkit", "edm"])
def test_mol_from_coords(mol, smiles, method):
    m = mol_from_coords(*mol, method=method)
    assert m.GetNumConformers() == 1 and m.GetConformer().Is3D()
    np.testing.assert_allclose(m.GetConformer().GetPositions(), np.array(mol[1], float))
    assert Chem.MolToSmiles(Chem.RemoveHs(m)) == smiles
    assert m.GetProp(BOND_PERCEPTION_PROP) == ("edm" if method == "edm" else "rdkit:radii")


def test_mol_from_coords_returns_unsanitisable_molecules():
    for method in ("rdkit", "edm"):
        m = mol_from_coords(*PENTAVALENT_C, method=method)
        assert m is not None and m.GetAtomWithIdx(0).GetDegree() == 5
        with pytest.raises(Exception):
            Chem.SanitizeMol(Chem.Mol(m))
    assert mol_from_coords(*PENTAVALENT_C).GetProp(BOND_PERCEPTION_PROP) == "rdkit:connectivity_only"


def test_rdkit_fallbacks():
    # A methyl radical has no closed-shell Lewis structure: connectivity only, no implicit H.
    m = mol_from_coords(*METHYL)
    assert m.GetProp(BOND_PERCEPTION_PROP) == "rdkit:connectivity_only"
    assert all(a.GetNoImplicit() for a in m.GetAtoms())
    # With charge -1 it is the methyl anion, which has one.
    assert mol_from_coords(*METHYL, charge=-1).GetProp(BOND_PERCEPTION_PROP) == "rdkit:radii"
    # Bicyclo[1.1.1]pentane: its bridgeheads are ~1.9 A apart, inside 1.3 x the covalent
    # radii, so the radii rule draws a false bond; the Hueckel retry removes it.
    ref = Chem.AddHs(Chem.MolFromSmiles("C1C2CC1C2"))
    AllChem.EmbedMolecule(ref, randomSeed=0)
    AllChem.MMFFOptimizeMolecule(ref)
    z = [a.GetAtomicNum() for a in ref.GetAtoms()]
    m = mol_from_coords(z, ref.GetConformer().GetPositions())
    assert m.GetProp(BOND_PERCEPTION_PROP) == "rdkit:hueckel"
    assert Chem.MolToSmiles(Chem.RemoveHs(m)) == Chem.MolToSmiles(Chem.MolFromSmiles("C1C2CC1C2"))


def test_mol_from_coords_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        mol_from_coords(*METHANE, method="openbabel")
    with pytest.raises(ValueError, match="NaN"):
        mol_from_coords([6], [[np.inf, 0, 0]])
    with pytest.raises(ValueError, match="not an element"):
        mol_from_coords([0, 1], [[0, 0, 0], [1, 0, 0]])
    assert atomic_number("C") == 6


def test_collapsed_cluster_gets_no_bonds_instead_of_crashing():
    """An untrained generator puts 18 hydrogens within 0.01 A; RDKit's perception
    segfaulted on such a cluster, so it must be refused before reaching RDKit."""
    pos = np.random.default_rng(0).normal(size=(18, 3)) * 0.001
    mol = mol_from_coords(np.ones(18, dtype=int), pos)
    assert mol.GetNumBonds() == 0
    assert mol.GetProp(BOND_PERCEPTION_PROP) == "rdkit:atoms_too_close"
