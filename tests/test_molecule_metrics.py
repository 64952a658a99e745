"""Molecule metrics on hand-made molecules and on real QM9 ground truth (EDM's data row)."""
import ast
import functools
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from dit3d.chem import mol_from_coords, write_sdf, write_xyz
from dit3d.metrics import ALLOWED_VALENCIES, atom_stability, canonical_smiles, evaluate_molecules

_T = 1.09 / np.sqrt(3)
WATER = ([8, 1, 1], [[0.0, 0, 0], [0.96, 0, 0], [-0.2404, 0.9294, 0]])
METHANE = ([6, 1, 1, 1, 1], [[0, 0, 0], [_T, _T, _T], [-_T, -_T, _T], [-_T, _T, -_T], [_T, -_T, -_T]])
ETHYLENE = ([6, 6, 1, 1, 1, 1], [[0, 0, 0], [1.33, 0, 0], [-0.545, 0.944, 0], [-0.545, -0.944, 0],
                                 [1.875, 0.944, 0], [1.875, -0.944, 0]])
ACETYLENE = ([6, 6, 1, 1], [[0, 0, 0], [1.20, 0, 0], [-1.06, 0, 0], [2.26, 0, 0]])
PENTAVALENT_C = ([6, 1, 1, 1, 1, 1], [[0, 0, 0], [1.09, 0, 0], [-1.09, 0, 0], [0, 1.09, 0], [0, -1.09, 0], [0, 0, 1.09]])
# Ethane with its C-C bond stretched to 2.0 A: EDM (< 1.64 A) and RDKit (< 1.98 A) both see
# two methyl radicals.
_H = [[-0.363, 1.028, 0], [-0.363, -0.514, 0.890], [-0.363, -0.514, -0.890]]
BROKEN_ETHANE = ([6, 6, 1, 1, 1, 1, 1, 1],
                 [[0, 0, 0], [2.0, 0, 0]] + _H + [[2.0 - x, y, w] for x, y, w in _H])
METHYL = ([6, 1, 1, 1], [[0, 0, 0], [1.09, 0, 0], [-0.545, 0.944, 0], [-0.545, -0.944, 0]])
GOOD = [WATER, METHANE, ETHYLENE, ACETYLENE]


def test_allowed_valencies_are_edms():
    symbols = {Chem.GetPeriodicTable().GetElementSymbol(z): v for z, v in ALLOWED_VALENCIES.items()}
    assert symbols["H"] == (1,) and symbols["C"] == (4,) and symbols["N"] == (3,) and symbols["O"] == (2,)
    assert symbols["F"] == symbols["Cl"] == symbols["Br"] == symbols["I"] == (1,)
    assert symbols["B"] == (3,) and symbols["Si"] == (4,) and symbols["P"] == (3, 5) and symbols["S"] == (4,)


def test_atom_stability_per_atom():
    assert atom_stability(*WATER).all() and atom_stability(*ACETYLENE).all()
    assert atom_stability(*PENTAVALENT_C).tolist() == [False] + [True] * 5
    assert atom_stability(*BROKEN_ETHANE).tolist() == [False, False] + [True] * 6
    assert not atom_stability([11], [[0, 0, 0]]).any()  # no allowed valency for Na


@pytest.mark.parametrize("protocol", ["edm", "adit"])
def test_small_valid_molecules(protocol):
    r = evaluate_molecules(GOOD, protocol=protocol)
    assert r["atom_stability"] == r["mol_stability"] == r["validity"] == r["uniqueness"] == 1.0
    assert r["novelty"] is None and r["counts"]["valid"] == 4 and r["counts"]["atoms"] == 18
    assert r["counts"]["odd_electron"] == 0


def test_odd_electron_compositions_are_counted_never_stable_and_not_adit_valid():
    # the methyl radical CH3 (9 electrons) and PENTAVALENT_C's CH5 (11): no closed-shell structure exists
    r = evaluate_molecules([WATER, METHYL, PENTAVALENT_C], protocol="adit")
    assert r["counts"]["odd_electron"] == 2 and r["validity"] == 1 / 3 and r["mol_stability"] == 1 / 3
    edm = evaluate_molecules([WATER, METHYL, PENTAVALENT_C], protocol="edm")
    assert edm["counts"]["odd_electron"] == 2 and edm["mol_stability"] == 1 / 3  # EDM validity adds implicit H
    assert "radicals" in r["protocol"]["counts.odd_electron"]


def test_broken_radical_and_pentavalent_molecules():
    edm = evaluate_molecules([BROKEN_ETHANE, METHYL, PENTAVALENT_C], protocol="edm")
    assert edm["mol_stability"] == 0.0 and edm["atom_stability"] == 14 / 18
    # EDM builds Mols with implicit H allowed: each methyl becomes methane, which is valid;
    # five bonds on carbon fail sanitisation.
    assert edm["counts"]["valid"] == 2 and edm["counts"]["multi_fragment_valid"] == 1
    assert edm["uniqueness"] == 0.5  # both are "C"
    adit = evaluate_molecules([BROKEN_ETHANE, METHYL, PENTAVALENT_C], protocol="adit")
    assert adit["mol_stability"] == 0.0
    # xyz2mol splits the broken ethane into CH3+ and CH3- (charged fragments, total charge
    # 0): valid but in two fragments, as both protocols allow. The lone methyl radical has
    # no closed-shell structure and five bonds on carbon cannot be sanitised: invalid.
    assert adit["counts"]["valid"] == 1 and adit["counts"]["multi_fragment_valid"] == 1


def test_uniqueness_and_novelty():
    r = evaluate_molecules([WATER, WATER, METHANE, PENTAVALENT_C], train_smiles=["O", "[H]O[H]", "not a smiles"])
    assert r["validity"] == 0.75 and r["uniqueness"] == 2 / 3 and r["valid_and_unique"] == 0.5
    assert r["novelty"] == 0.5  # methane is new, water is not
    assert r["counts"]["train_smiles"] == 3 and r["counts"]["train_smiles_unparsed"] == 1
    pre = evaluate_molecules([WATER, METHANE], train_smiles={"C"}, train_smiles_are_canonical=True)
    assert pre["novelty"] == 0.5


def test_canonical_smiles_is_heavy_atom_largest_fragment_without_stereo():
    assert canonical_smiles("[H]C([H])([H])[H]") == "C"
    assert canonical_smiles("C[C@@H](N)O.[Na+].[Cl-]") == canonical_smiles("CC(O)N") == "CC(N)O"
    assert canonical_smiles("F/C=C/F") == canonical_smiles("F/C=C\\F") == "FC=CF"
    assert canonical_smiles("c1ccccc1") == canonical_smiles("C1=CC=CC=C1")
    assert canonical_smiles("C(C)(C)(C)(C)C") is None and canonical_smiles("((") is None
    assert canonical_smiles(mol_from_coords(*ETHYLENE)) == "C=C"


def test_nonfinite_and_empty_molecules_count_as_failures():
    nan = (WATER[0], np.array(WATER[1], float) * np.nan)
    r = evaluate_molecules([WATER, nan, ([], np.zeros((0, 3)))])
    assert r["validity"] == 1 / 3 and r["mol_stability"] == 1 / 3
    assert r["counts"]["nonfinite_or_empty"] == 2 and r["atom_stability"] == 3 / 6


def test_inputs_files_and_mols_agree(tmp_path):
    ref = evaluate_molecules(GOOD + [PENTAVALENT_C])
    from_xyz = evaluate_molecules(write_xyz(tmp_path / "m.xyz", GOOD + [PENTAVALENT_C]))
    mols = [mol_from_coords(*m, method="edm") for m in GOOD + [PENTAVALENT_C]]
    from_sdf = evaluate_molecules(str(write_sdf(tmp_path / "m.sdf", mols)))
    from_mols = evaluate_molecules(mols)
    for r in (from_xyz, from_sdf, from_mols):
        assert {k: r[k] for k in ("atom_stability", "mol_stability", "validity", "uniqueness")} == \
               {k: ref[k] for k in ("atom_stability", "mol_stability", "validity", "uniqueness")}


def test_protocol_record():
    r = evaluate_molecules([WATER], protocol="adit")
    p = r["protocol"]
    assert p["name"] == "adit" and p["n_samples"] == 1 and "RDKit" in p["bond_perception"]
    assert set(p["versions"]) >= {"rdkit", "numpy", "dit3d"}
    assert p["edm_margins_pm"] == {"single": 10, "double": 5, "triple": 3}
    for key in ("validity", "uniqueness", "novelty", "smiles", "posebusters"):
        assert isinstance(p[key], str) and p[key]
    if importlib.util.find_spec("posebusters") is None:
        assert r["posebusters"] is None and "not installed" in p["posebusters"]
    assert evaluate_molecules([WATER])["protocol"]["bond_perception"].startswith("EDM")


def test_posebusters_used_when_importable(monkeypatch):
    import pandas as pd

    class FakeBusters:
        def __init__(self, config):
            assert config == "mol"

        def bust(self, mols, true, cond):
            return pd.DataFrame({"sanitization": [True] * len(mols), "bond_lengths": [True, False][:len(mols)],
                                 "molecule": ["x"] * len(mols)})

    monkeypatch.setitem(sys.modules, "posebusters", types.SimpleNamespace(PoseBusters=FakeBusters))
    r = evaluate_molecules([WATER, METHANE], protocol="adit")
    assert r["posebusters"] == {"sanitization": 1.0, "bond_lengths": 0.5}
    assert evaluate_molecules([WATER], protocol="edm")["posebusters"] is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="protocol"):
        evaluate_molecules([WATER], protocol="geom")
    with pytest.raises(ValueError, match="no molecules"):
        evaluate_molecules([])
    with pytest.raises(ValueError, match="molecule 1.*not an element"):
        evaluate_molecules([WATER, ([0, 1], [[0, 0, 0], [1, 0, 0]])])
    with pytest.raises(ValueError, match="molecule 0.*shape"):
        evaluate_molecules([([8, 1], [[0, 0, 0]])])
    with pytest.raises(ValueError, match="conformer"):
        evaluate_molecules([Chem.MolFromSmiles("O")])


# --- QM9 ground truth ------------------------------------------------------------------
# EDM's QM9 data row (Hoogeboom et al. 2022, Table 1/2): atom stability 99.0%, molecule
# stability 95.2%, validity 97.7%.

@functools.lru_cache(maxsize=None)
def _qm9_table():
    pd = pytest.importorskip("pandas")
    spec = importlib.util.find_spec("qm9pack")  # locates the wheel without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qm9pack is not installed")
    data = Path(spec.submodule_search_locations[0]) / "data"
    parts = sorted(data.glob("qm9_part*.csv"))
    return pd.concat([pd.read_csv(p, usecols=["SMILES", "Elements", "XYZ_Ang"]) for p in parts], ignore_index=True)


def _qm9_sample(n, seed):
    df = _qm9_table()
    idx = np.random.default_rng(seed).choice(len(df), n, replace=False)
    mols = [(ast.literal_eval(df.Elements.iloc[i]), np.array(ast.literal_eval(df.XYZ_Ang.iloc[i]))) for i in idx]
    return mols, df.SMILES.iloc[idx].tolist()


def test_qm9_ground_truth_default():
    # 300 molecules, seed 0 score 99.3 / 95.0 / 97.3 (EDM) and 100% valid (ADiT). The
    # bounds allow ~2.5 standard errors of a 300-sample estimate around the published row.
    mols, smiles = _qm9_sample(300, seed=0)
    edm = evaluate_molecules(mols, protocol="edm", train_smiles=smiles[:150])
    assert abs(edm["atom_stability"] - 0.990) < 0.006
    assert abs(edm["mol_stability"] - 0.952) < 0.03
    assert abs(edm["validity"] - 0.977) < 0.025
    assert edm["uniqueness"] > 0.99
    assert 0.45 < edm["novelty"] < 0.56  # half of the sample is the "training set"
    adit = evaluate_molecules(mols, protocol="adit", train_smiles=smiles[:150])
    assert adit["validity"] > 0.98 and adit["uniqueness"] > 0.99
    assert adit["counts"]["novel"] <= 150 + 6  # training molecules are recognised as such


@pytest.mark.slow
def test_qm9_ground_truth_5000():
    # 5000 molecules, seed 0 (measured): EDM 99.36 / 95.40 / 97.70; ADiT validity 100%.
    mols, smiles = _qm9_sample(5000, seed=0)
    edm = evaluate_molecules(mols, protocol="edm")
    assert abs(edm["atom_stability"] - 0.990) < 0.005
    assert abs(edm["mol_stability"] - 0.952) < 0.01
    assert abs(edm["validity"] - 0.977) < 0.01
    adit = evaluate_molecules(mols, protocol="adit", train_smiles=smiles)
    assert adit["validity"] > 0.99 and adit["uniqueness"] > 0.999
    assert adit["novelty"] < 0.005  # the sample is its own training set


def test_collapsed_cluster_is_invalid_under_both_protocols():
    """Isolated, overlapping atoms (what an untrained generator emits) are not a molecule."""
    pos = np.random.default_rng(0).normal(size=(18, 3)) * 0.001
    for protocol in ("edm", "adit"):
        result = evaluate_molecules([(np.ones(18, dtype=int), pos)], protocol=protocol)
        assert result["validity"] == 0.0 and result["mol_stability"] == 0.0, protocol
