"""Crystal metrics (CDVAE / DiffCSP protocol) on tiny hand-made structures, and `dit3d evaluate crystals`."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dit3d.chem.crystals import CrystalFileError, write_cif, write_cif_dir
from dit3d.metrics.crystals import structure_validity, uniqueness_novelty
from dit3d.metrics.crystals_fingerprints import (COV_CUTOFFS, CompositionScaler, Fingerprints, MissingExtraError,
                                                 coverage, require_extra)
from dit3d.metrics.crystals_io import load_crystals


def cscl(a: str, b: str, edge: float = 3.3) -> Structure:
    """A two-atom CsCl-type cell (nearest distance sqrt(3)/2 * edge)."""
    return Structure(Lattice.cubic(edge), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


NACL, KCL = cscl("Na", "Cl"), cscl("K", "Cl", 3.7)


# ------------------------------------------------------------------ structural validity
def test_structure_validity_distance_and_volume():
    assert structure_validity(NACL)
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.1, 0, 0]])  # 0.4 A apart
    assert not structure_validity(close)
    # across the periodic boundary: 0.02 and 0.98 are 0.16 A apart (minimum image), not 3.8 A
    assert not structure_validity(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.02, 0, 0], [0.98, 0, 0]]))
    assert structure_validity(close, min_distance=0.3)
    assert not structure_validity(Structure(Lattice.cubic(0.4), ["Po"], [[0, 0, 0]]))  # 0.064 A^3 < 0.1
    assert structure_validity(Structure(Lattice.cubic(3.36), ["Po"], [[0, 0, 0]]))  # one atom: volume only


# --------------------------------------------------------------- compositional validity
def test_smact_validity_follows_cdvae():
    pytest.importorskip("smact")
    from dit3d.metrics.crystals import smact_validity

    assert smact_validity("NaCl") and smact_validity(NACL)
    assert not smact_validity("NaCl2")  # Na+ and Cl- cannot balance 1:2
    assert smact_validity("C") and smact_validity("Si")  # single elements are valid (CDVAE)
    assert smact_validity("Cu3Au")  # all metals: an alloy, valid (include_alloys=True)
    assert not smact_validity("NaO2")  # superoxide O(-1/2) is not an integer state
    assert smact_validity("Na2O2")  # reduced to NaO: Na+ O- balances in the 2014 list
    assert smact_validity(Structure(Lattice.cubic(5), ["Na"] * 2 + ["Cl"] * 2, np.random.rand(4, 3)))  # gcd-reduced
    with pytest.raises(ValueError, match="non-integer"):
        smact_validity("Na0.5Cl0.5")


def test_smact_validity_matches_smact_own_function():
    screening = pytest.importorskip("smact.screening")
    from pymatgen.core import Composition

    from dit3d.metrics.crystals import smact_validity

    try:
        screening.smact_validity(Composition("NaCl"), oxidation_states_set="smact14")
    except (AttributeError, TypeError):
        pytest.skip("this SMACT has no smact_validity(oxidation_states_set=...)")
    for formula in ("NaCl", "NaCl2", "Fe2O3", "FeO", "CsPbI3", "LiFePO4", "In2O2F", "K2N3", "BaLaN3", "Cu3Au",
                    "SrTiO3", "KRbN3", "HeNe"):
        assert smact_validity(formula) == screening.smact_validity(
            Composition(formula), oxidation_states_set="smact14"), formula


def _smact_valid_brute_force(symbols, counts) -> bool:
    """CDVAE's loop as written: every oxidation-state combination, neutral ones Pauling-tested."""
    import itertools

    import smact
    from smact.screening import pauling_test

    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    elements = [smact.Element(s) for s in symbols]
    ox = [e.oxidation_states_smact14 or [] for e in elements]
    eneg = [e.pauling_eneg for e in elements]
    for states in itertools.product(*ox):
        if sum(q * n for q, n in zip(states, counts)) == 0:
            try:
                if pauling_test(states, eneg):
                    return True
            except TypeError:
                return True
    return False


def test_smact_validity_pruned_search_equals_brute_force():
    pytest.importorskip("smact")
    from dit3d.metrics.crystals import _smact_valid

    rng = np.random.default_rng(0)
    pool = ["Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Al", "Ga", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
            "Sn", "Pb", "Bi", "B", "C", "N", "P", "S", "Se", "O", "F", "Cl", "Br", "I", "H", "Si", "Sb", "Te"]
    checked = {True: 0, False: 0}
    for _ in range(300):
        k = int(rng.integers(2, 5))
        symbols = tuple(sorted(rng.choice(pool, k, replace=False).tolist()))
        counts = tuple(int(c) for c in rng.integers(1, 7, k))
        expected = _smact_valid_brute_force(symbols, counts)
        assert _smact_valid(symbols, counts, True, True) == expected, (symbols, counts)
        checked[expected] += 1
    assert min(checked.values()) > 30  # both answers exercised


def test_smact_validity_of_many_elements_is_fast():
    pytest.importorskip("smact")
    import time

    from dit3d.metrics.crystals import smact_validity

    smact_validity("NaCl")  # imports SMACT
    for formula in ("Mn2Cr3V2Co1Fe2Ni3Ti1Cu2S5Se3N1",  # ~10^8 combinations for CDVAE's full loop
                    "LiNaKMgCaSrBaAlGaTiVCrMnFeCoNiCuZnSnPbBiBCNPSSeOFClBr"):  # 34 elements: ~10^25
        start = time.perf_counter()
        valid = smact_validity(formula)
        assert time.perf_counter() - start < 5.0, formula
        assert isinstance(valid, bool)


# ------------------------------------------------------------- uniqueness and novelty
def test_uniqueness_and_novelty():
    shifted = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])  # same crystal
    out = uniqueness_novelty([NACL, shifted, KCL], train=[NACL])
    assert out["unique"] == 2 and out["uniqueness"] == pytest.approx(2 / 3)
    assert out["is_first"].tolist() == [True, False, True]
    assert out["novel"] == 1 and out["novelty"] == 0.5  # NaCl is in train, KCl is not
    assert uniqueness_novelty([NACL, KCL])["novelty"] is None
    expanded = cscl("Na", "Cl", 3.3 * 1.5)  # StructureMatcher scales volumes (scale=True): still the same crystal
    assert uniqueness_novelty([NACL, expanded])["unique"] == 1


# ------------------------------------------------------------------------ coverage
def _fps(struct, comp, ok=None) -> Fingerprints:
    struct, comp = np.asarray(struct, float), np.asarray(comp, float)
    return Fingerprints(struct, comp, np.ones(len(struct), bool) if ok is None else np.asarray(ok))


def test_coverage_definitions():
    unit = CompositionScaler(np.zeros(2), np.ones(2), "identity")
    ref = _fps([[0.0], [1.0]], [[0, 0], [5, 5]])
    same = coverage(ref, ref, 0.1, 1.0, unit)
    assert same["cov_recall"] == 1.0 and same["cov_precision"] == 1.0 and same["amsd_recall"] == 0.0
    # one generated sample near reference 0; one whose fingerprint failed (a miss for COV-P)
    gen = _fps([[0.05], [np.nan]], [[0, 0.5], [np.nan, np.nan]], ok=[True, False])
    cov = coverage(gen, ref, 0.1, 1.0, unit)
    assert cov["cov_recall"] == 0.5 and cov["cov_precision"] == 0.5
    assert coverage(gen, ref, 0.1, 1.0, unit, num_generated=4)["cov_precision"] == 0.25  # + 2 unreadable samples
    # structure and composition minima are taken separately (CDVAE): recall needs both cutoffs met
    cross = _fps([[0.0], [9.0]], [[9, 9], [0, 0]])
    assert coverage(cross, ref, 0.1, 1.0, unit)["cov_recall"] == 0.5
    assert COV_CUTOFFS["mp20"] == {"struct": 0.4, "comp": 10.0} and COV_CUTOFFS["perov"]["comp"] == 4.0


def test_composition_scaler(tmp_path):
    s = CompositionScaler(np.array([1.0, 2.0]), np.array([2.0, 1.0]), "t")
    assert s.transform(np.array([[3.0, np.nan]])).tolist() == [[1.0, 0.0]]  # NaN -> 0 after scaling
    fit = CompositionScaler.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert fit.means.tolist() == [2.0, 5.0] and fit.stds.tolist() == [1.0, 1.0]  # zero std -> 1
    assert CompositionScaler.default().means.shape == (132,)
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"means": [0.0] * 3, "stds": [1.0] * 3}))
    with pytest.raises(ValueError, match="132"):
        CompositionScaler.from_json(bad)
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"means": [0.0] * 132, "stds": [1.0] * 132}))
    assert "g.json" in CompositionScaler.from_json(good).name


def test_missing_extra_names_the_extra():
    with pytest.raises(MissingExtraError, match=r'pip install "dit3d\[crystals\]"'):
        require_extra("dit3d_no_such_package", "a test")


# ------------------------------------------------------------------ full evaluation
def test_evaluate_crystals_counts_and_identical_sets():
    pytest.importorskip("smact")
    pytest.importorskip("matminer")
    from dit3d.metrics.crystals import evaluate_crystals

    too_close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    nacl2 = Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0.5]])
    r = evaluate_crystals([NACL, NACL.copy(), KCL, too_close, nacl2], [NACL, KCL], train=[NACL], cutoffs="mp20")
    assert r["struct_validity"] == 0.8 and r["comp_validity"] == 0.8 and r["validity"] == 0.6
    assert r["uniqueness"] == pytest.approx(2 / 3) and r["novelty"] == 0.5
    assert r["cov_recall"] == 1.0 and r["sun"] is None
    p = r["protocol"]
    assert p["structure_matcher"] == {"ltol": 0.3, "stol": 0.5, "angle_tol": 10.0}
    assert p["coverage"]["struct_cutoff"] == 0.4 and p["n_samples"] == 5 and "smact" in p["versions"]
    same = evaluate_crystals([NACL, KCL], [NACL, KCL], cutoffs="perov")
    assert same["wdist_density"] == 0.0 and same["wdist_num_elements"] == 0.0
    assert same["cov_recall"] == 1.0 and same["cov_precision"] == 1.0 and same["novelty"] is None
    with pytest.raises(ValueError, match="cutoffs"):
        evaluate_crystals([NACL], [NACL], cutoffs="mp-20")


def test_energies_above_hull_and_sun():
    pytest.importorskip("smact")
    pytest.importorskip("matminer")
    from ase.calculators.emt import EMT

    from dit3d.metrics.crystals import evaluate_crystals
    from dit3d.metrics.crystals_stability import energies_above_hull, entries_from_structures

    cu = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    squeezed = cu.copy()
    squeezed.scale_lattice(cu.volume * 0.8)
    hull = entries_from_structures([cu], EMT())
    e = energies_above_hull([cu, squeezed], EMT(), hull)
    assert e[0] == pytest.approx(0.0, abs=1e-9) and e[1] > 0.05
    with pytest.raises(ValueError, match="reference phase"):
        energies_above_hull([NACL], EMT(), hull)
    r = evaluate_crystals([cu, squeezed], [cu], train=[NACL], e_above_hull=e.tolist(), stability_threshold=0.0)
    assert r["uniqueness"] == 0.5 and r["sun"] == 0.5  # squeezed Cu matches Cu (scale=True): one unique, stable


# --------------------------------------------------------------------------- reading
def test_load_crystals_counts_bad_records(tmp_path):
    folder = write_cif_dir(tmp_path / "gen", [NACL, KCL])
    (folder / "zzz_bad.cif").write_text("data_x\n_cell_length_a 3\n")
    s = load_crystals(folder)
    assert len(s.structures) == 2 and s.num_records == 3
    assert s.failures[0]["where"] == "zzz_bad.cif" and "_cell_length_b" in s.failures[0]["reason"]
    import pandas as pd

    good = (folder / "000000.cif").read_text()
    pd.DataFrame({"material_id": ["a", "b", "c"], "cif": [good, "", "data_y\nnonsense"]}).to_csv(
        tmp_path / "set.csv.gz", index=False)
    c = load_crystals(tmp_path / "set.csv.gz")
    assert len(c.structures) == 1
    assert [f["where"] for f in c.failures] == ["set.csv.gz row 1 (b)", "set.csv.gz row 2 (c)"]
    assert c.failures[0]["reason"] == "empty cif cell"
    from dit3d.chem.crystals import write_extxyz

    assert len(load_crystals(write_extxyz(tmp_path / "s.extxyz", [NACL, KCL])).structures) == 2
    multi = tmp_path / "multi.cif"
    multi.write_text(write_cif(tmp_path / "two.cif", [NACL, KCL]).read_text() + "data_broken\n_cell_length_a 3\n")
    m = load_crystals(multi)
    assert len(m.structures) == 2 and m.failures[0]["where"] == "multi.cif block 2"  # one bad block fails alone
    with pytest.raises(CrystalFileError, match="does not exist"):
        load_crystals(tmp_path / "missing.cif")
    with pytest.raises(CrystalFileError, match="unknown extension"):
        load_crystals(write_cif(tmp_path / "x.cif", NACL).rename(tmp_path / "x.pdb"))
    pd.DataFrame({"cif": ["", "garbage"]}).to_csv(tmp_path / "allbad.csv", index=False)
    with pytest.raises(CrystalFileError, match="no readable structure"):
        load_crystals(tmp_path / "allbad.csv")


def test_cli_evaluate_crystals(tmp_path, capsys):
    pytest.importorskip("smact")
    pytest.importorskip("matminer")
    from dit3d.cli import main

    gen = write_cif_dir(tmp_path / "gen", [NACL, NACL.copy(), KCL])
    (gen / "zzz_broken.cif").write_text("this is not a CIF\n")
    ref = write_cif_dir(tmp_path / "ref", [NACL, KCL])
    train = write_cif(tmp_path / "train.cif", [KCL])
    out = tmp_path / "res.json"
    main(["evaluate", "crystals", str(gen), "--reference", str(ref), "--train", str(train), "--cutoffs", "mp20",
          "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    line = capsys.readouterr().out.strip()
    result = json.loads(line)
    assert out.read_text().strip() == line
    for key in ("struct_validity", "comp_validity", "validity", "cov_recall", "cov_precision", "wdist_density",
                "wdist_num_elements", "uniqueness", "novelty", "protocol"):
        assert key in result
    assert result["validity"] == 0.75 and result["counts"]["unreadable"] == 1  # the broken file counts as invalid
    assert result["unreadable"]["generated"][0]["where"] == "zzz_broken.cif"
    assert result["uniqueness"] == pytest.approx(2 / 3) and result["novelty"] == 0.5
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # generated and reference fingerprints cached
    with pytest.raises(SystemExit, match="does not exist"):
        main(["evaluate", "crystals", str(tmp_path / "nope"), "--reference", str(ref), "--no-cache"])


def test_cli_missing_extra_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("smact")
    from dit3d.cli import main
    from dit3d.metrics import crystals_fingerprints

    crystals_fingerprints._featurizers.cache_clear()
    monkeypatch.setitem(sys.modules, "matminer.featurizers.site.fingerprint", None)  # import raises ImportError
    ref = write_cif_dir(tmp_path / "ref", [NACL])
    try:
        with pytest.raises(SystemExit, match=r'dit3d\[crystals\]'):
            main(["evaluate", "crystals", str(ref), "--reference", str(ref), "--no-cache", "--no-progress"])
    finally:
        crystals_fingerprints._featurizers.cache_clear()
