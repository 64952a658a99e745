"""Crystal CSV loader and data module: parsing, canonical lattices, failed rows, dedup, cache, batching."""
from __future__ import annotations

import csv
import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import dit3d.data.crystals as crystals_module
from dit3d.data import CrystalDataModule, CrystalDataset, combine_crystal_csvs, dev_split_files, shared_fields
from dit3d.data.crystals import DEV_SPLITS, SYMPREC
from dit3d.tokenizers.atoms import CRYSTAL, MOLECULE, Atoms

from cifs import NACL_CIF, PO_CIF  # tests/ is on sys.path under pytest's default import mode

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "crystals"

# The same rock salt as a P1 CIF (all eight sites listed): parses ~50x faster than the
# space-group form, whose symmetry operations pymatgen expands and de-duplicates first.
NACL_P1 = str(CifWriter(Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                                  [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                                   [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])))


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """A CDVAE-layout CSV (``.csv`` or ``.csv.gz``) with an unnamed index column, as the real files have."""
    fields = ["", *rows[0].keys()]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"": str(i), **r})
    return path


def cif_of(s: Structure) -> str:
    return str(CifWriter(s))


def load(paths, root, **kw) -> CrystalDataset:
    return CrystalDataset(paths, root=str(root), progress=False, **kw)


def check_consistent(ds: CrystalDataset) -> None:
    """Per-crystal invariants of the shared representation."""
    for d in ds:
        n = int(d.num_atoms)
        assert d.atom_types.shape == (n,) and d.atom_types.dtype == torch.long
        assert d.frac_coords.shape == d.pos.shape == (n, 3) and d.pos.dtype == torch.float32
        assert d.cell.shape == (1, 3, 3) and d.lengths.shape == d.angles.shape == (1, 3)
        assert ((d.frac_coords >= 0) & (d.frac_coords < 1)).all()
        torch.testing.assert_close(d.pos, d.frac_coords @ d.cell[0], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(d.cell[0].norm(dim=-1), d.lengths[0], atol=1e-4, rtol=1e-5)
        assert d.dataset_idx.tolist() == [CRYSTAL] and CRYSTAL == crystals_module.CRYSTAL


def test_hand_written_rows(tmp_path):
    csv_path = write_csv(tmp_path / "hand.csv", [{"material_id": "nacl", "cif": NACL_CIF},
                                                {"material_id": "po", "cif": PO_CIF}])
    ds = load(csv_path, tmp_path / "cache")
    assert len(ds) == 2 and ds.failed_rows == [] and ds.material_ids == ["nacl", "po"]
    assert ds.formulas == ["NaCl", "Po"]
    nacl, po = ds[0], ds[1]
    assert sorted(nacl.atom_types.tolist()) == [11] * 4 + [17] * 4
    torch.testing.assert_close(nacl.lengths, torch.full((1, 3), 5.64))
    torch.testing.assert_close(nacl.angles, torch.full((1, 3), 90.0))
    assert nacl.spacegroup.tolist() == [225] and po.spacegroup.tolist() == [221]
    assert po.atom_types.tolist() == [84] and po.frac_coords.tolist() == [[0.0, 0.0, 0.0]]  # 1.0 wrapped to 0
    assert po.csv_row.tolist() == [1] and po.csv_file.tolist() == [0]
    check_consistent(ds)


def test_niggli_and_canonical_lattice_agree_across_settings(tmp_path):
    # primitive rock salt written in three settings: reduced, another basis of the same
    # lattice, and rotated in space; all must load as the same lengths, angles and cell
    prim = Structure(Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    skew = prim.copy()
    skew.make_supercell([[1, 0, 0], [1, 1, 0], [1, 1, 1]])  # det 1: same cell, long vectors
    assert skew.lattice.abc[2] > 6.0
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    rotated = Structure(Lattice(prim.lattice.matrix @ rot.T), prim.species, prim.frac_coords)
    rows = [{"material_id": k, "cif": cif_of(s)} for k, s in (("prim", prim), ("skew", skew), ("rot", rotated))]
    ds = load(write_csv(tmp_path / "settings.csv", rows), tmp_path / "cache")
    for d in (ds[1], ds[2]):
        torch.testing.assert_close(d.lengths, ds[0].lengths, atol=1e-4, rtol=0)
        torch.testing.assert_close(d.angles, ds[0].angles, atol=1e-3, rtol=0)
        torch.testing.assert_close(d.cell, ds[0].cell, atol=1e-4, rtol=0)
    torch.testing.assert_close(ds[0].angles, torch.full((1, 3), 60.0), atol=1e-3, rtol=0)
    assert ds._data.spacegroup.tolist() == [225] * 3
    # the canonical cell is pymatgen's from_parameters orientation
    expected = Lattice.from_parameters(*ds[1].lengths[0].tolist(), *ds[1].angles[0].tolist()).matrix
    np.testing.assert_allclose(ds[1].cell[0].numpy(), expected, atol=1e-4)
    check_consistent(ds)


def test_failed_rows_are_reported_and_cached(tmp_path):
    bad_occupancy = PO_CIF.replace("Po Po1 1.0 -0.0 0.0 1", "Po Po1 1.0 -0.0 0.0 0.5")
    rows = [{"material_id": "ok", "cif": PO_CIF}, {"material_id": "junk", "cif": "this is not a CIF"},
            {"material_id": "blank", "cif": ""}, {"material_id": "half", "cif": bad_occupancy}]
    path = write_csv(tmp_path / "bad.csv.gz", rows)
    with pytest.warns(UserWarning, match=r"3 of 4 crystal rows could not be parsed.*bad.csv.gz row 1 \(junk\)"):
        ds = load(path, tmp_path / "cache")
    assert len(ds) == 1 and ds.material_ids == ["ok"]
    reasons = {r["row"]: r["reason"] for r in ds.failed_rows}
    assert sorted(reasons) == [1, 2, 3]
    assert "malformed CIF" in reasons[1] and "empty" in reasons[2] and "partially occupied" in reasons[3]
    assert all(r["file"] == str(path.resolve()) for r in ds.failed_rows)
    # the record lives in the cache: a second load reports the same rows without parsing
    with pytest.warns(UserWarning, match="3 of 4"):
        again = load(path, tmp_path / "cache")
    assert again.failed_rows == ds.failed_rows
    # a file with no usable row is an error, not an empty dataset
    only_bad = write_csv(tmp_path / "allbad.csv", rows[1:])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no crystals left"):
        load(only_bad, tmp_path / "cache")


def test_dedup_and_exclude_on_material_id(tmp_path):
    a = write_csv(tmp_path / "a.csv", [{"material_id": "m1", "cif": PO_CIF}, {"material_id": "m2", "cif": NACL_P1}])
    b = write_csv(tmp_path / "b.csv.gz", [{"material_id": "m2", "cif": NACL_P1}, {"material_id": "m3", "cif": PO_CIF}])
    ds = load([a, b], tmp_path / "cache")
    assert ds.material_ids == ["m1", "m2", "m3"] and ds.num_duplicates == 1
    assert ds._data.csv_file.tolist() == [0, 0, 1] and ds._data.csv_row.tolist() == [0, 1, 1]
    assert load([a, b], tmp_path / "cache", dedup=False).material_ids == ["m1", "m2", "m2", "m3"]
    held = load(b, tmp_path / "cache", exclude_ids=["m2"])
    assert held.material_ids == ["m3"] and held.num_excluded == 1
    df = combine_crystal_csvs([a, b])
    assert df["material_id"].tolist() == ["m1", "m2", "m3"] and df.attrs["duplicates"] == 1
    assert df["csv_row"].tolist() == [0, 1, 1] and df["csv_file"].tolist() == [str(a), str(a), str(b)]
    assert load([a, b], tmp_path / "cache", subset=2).material_ids == ["m1", "m2"]


def test_cache_is_reused_and_keyed_by_file(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "c.csv", [{"material_id": "po", "cif": PO_CIF}])
    first = load(path, tmp_path / "cache")
    files = sorted(os.listdir(tmp_path / "cache" / "processed"))
    assert len([f for f in files if f.startswith(f"{tmp_path.name}-c.csv-")]) == 1

    def no_parse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(crystals_module, "parse_crystal_csv", no_parse)
    second = load(path, tmp_path / "cache")
    assert torch.equal(second[0].pos, first[0].pos) and second.material_ids == ["po"]
    # an edited file, another parse setting or force_reload gets parsed again
    for kwargs in ({"symprec": 0.01}, {"force_reload": True}):
        with pytest.raises(AssertionError, match="cache should have been used"):
            load(path, tmp_path / "cache", **kwargs)
    write_csv(path, [{"material_id": "nacl", "cif": NACL_P1}])
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse file systems
    with pytest.raises(AssertionError, match="cache should have been used"):
        load(path, tmp_path / "cache")
    monkeypatch.undo()
    edited = load(path, tmp_path / "cache")
    assert edited.material_ids == ["nacl"]
    assert len(list((tmp_path / "cache" / "processed").glob(f"{tmp_path.name}-c.csv-*.pt"))) == 2  # old one kept
    # a corrupt cache file is rebuilt with a warning, not misread
    victim = Path(edited.processed_paths[0])
    victim.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding the crystal cache"):
        assert load(path, tmp_path / "cache").material_ids == ["nacl"]
    assert victim.read_bytes() != b"garbage"


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "missing.csv", tmp_path / "cache")
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load(tmp_path / "folder", tmp_path / "cache")
    no_cif = tmp_path / "nocif.csv"
    no_cif.write_text("material_id,structure\nm1,xyz\n")
    with pytest.raises(ValueError, match="no 'cif' column"):
        load(no_cif, tmp_path / "cache")
    ok = write_csv(tmp_path / "ok.csv", [{"material_id": "po", "cif": PO_CIF}])
    for kw, msg in (({"subset": 0}, "subset"), ({"subset": 2}, "exceeds"), ({"symprec": 0}, "symprec")):
        with pytest.raises(ValueError, match=msg):
            load(ok, tmp_path / "cache", **kw)
    with pytest.raises(ValueError, match="unknown crystal split preset"):
        dev_split_files("mp21", tmp_path)
    with pytest.raises(FileNotFoundError, match="needs"):
        dev_split_files("perov5-dev", tmp_path)


def test_batches_densify_with_atoms_from_pyg(tmp_path):
    rows = [{"material_id": "nacl", "cif": NACL_P1}, {"material_id": "po", "cif": PO_CIF}]
    ds = load(write_csv(tmp_path / "b.csv", rows), tmp_path / "cache")
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch.material_id == ["nacl", "po"] and batch.lengths.shape == (2, 3)
    atoms = Atoms.from_pyg(batch)
    assert atoms.atom_types.shape == (2, 8) and atoms.mask.sum(1).tolist() == [8, 1]
    torch.testing.assert_close(atoms.lattice, torch.cat([batch.lengths, batch.angles], -1))
    assert atoms.dataset_idx.tolist() == [CRYSTAL] * 2
    torch.testing.assert_close(atoms.frac_coords[1, :1], ds[1].frac_coords)
    assert not atoms.pos[1, 1:].any()  # padding


def test_mixed_batch_of_molecule_and_crystal(tmp_path):
    from dit3d.data.qm9 import QM9Arrays, QM9Data, collate_molecules

    # a QM9-format methane, built by the QM9 loader's own collate (no qm9pack parse needed)
    methane = QM9Arrays(torch.tensor([1]), torch.tensor([5]), ["C"], torch.tensor([6, 1, 1, 1, 1]),
                        torch.tensor([[0.0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                      [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]))
    mol, _ = collate_molecules(methane, cls=QM9Data)
    xtal = load(write_csv(tmp_path / "m.csv", [{"material_id": "nacl", "cif": NACL_P1}]), tmp_path / "cache")[0]
    with pytest.raises((KeyError, AttributeError)):  # the two kinds carry different extra fields
        Batch.from_data_list([xtal, mol])
    batch = Batch.from_data_list([shared_fields(mol), shared_fields(xtal)])
    atoms = Atoms.from_pyg(batch)
    assert atoms.dataset_idx.tolist() == [MOLECULE, CRYSTAL]
    assert atoms.mask.sum(1).tolist() == [5, 8]
    assert not atoms.lattice[0].any() and atoms.lattice[1].tolist() == pytest.approx([5.64] * 3 + [90.0] * 3)
    assert not atoms.frac_coords[0].any()


def test_datamodule_explicit_files(tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"material_id": f"t{i}", "cif": c}
                                               for i, c in enumerate([PO_CIF, NACL_P1, PO_CIF])])
    val = write_csv(tmp_path / "val.csv", [{"material_id": "t1", "cif": NACL_P1}, {"material_id": "v1", "cif": PO_CIF}])
    dm = CrystalDataModule(train_files=[str(train)], val_files=[str(val)], test_files=[str(val)],
                           root=str(tmp_path / "cache"), batch_size=2, progress=False, train_subset=2)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_dataset) == 2 and dm.val_dataset.material_ids == ["v1"]  # t1 is a training crystal
    with pytest.warns(UserWarning, match="1 test crystals share a material_id"):
        assert len(dm.test_dataset) == 2  # the test set stays whole
    b1 = [b.material_id for b in dm.train_dataloader()]
    assert b1 == [b.material_id for b in dm.train_dataloader()] or len(b1) == 1  # seeded shuffle
    assert next(iter(dm.val_dataloader())).num_graphs == 1
    Atoms.from_pyg(next(iter(dm.train_dataloader())))
    grouped = CrystalDataModule(train_files=[str(train)], root=str(tmp_path / "cache"), batch_size=2,
                                group_by_size=True, progress=False)
    assert sum(b.num_graphs for b in grouped.train_dataloader()) == 3
    for kw, msg in (({"batch_size": 0}, "batch_size"), ({"val_fraction": 1.0}, "val_fraction"),
                    ({}, "no crystal files"), ({"preset": "perov5-dev"}, "needs data_root")):
        with pytest.raises(ValueError, match=msg):
            CrystalDataModule(**kw)


def test_datamodule_preset_with_holdout(tmp_path, monkeypatch):
    root = tmp_path / "crystals"
    (root / "perov_5").mkdir(parents=True)
    rows = [{"material_id": f"p{i}", "cif": PO_CIF if i % 2 else NACL_P1} for i in range(10)]
    write_csv(root / "perov_5" / "val.csv", rows)
    write_csv(root / "perov_5" / "test.csv", [{"material_id": "x0", "cif": PO_CIF}])
    monkeypatch.setenv("DIT3D_CRYSTAL_DATA", str(root))  # data root from the environment
    dm = CrystalDataModule(preset="perov5-dev", root=str(tmp_path / "cache"), batch_size=4, val_fraction=0.2,
                           progress=False)
    dm.setup()
    assert len(dm.train_dataset) == 8 and len(dm.val_dataset) == 2 and len(dm.test_dataset) == 1
    idx = torch.cat([dm.split_indices["train"], dm.split_indices["val"]])
    assert sorted(idx.tolist()) == list(range(10))  # disjoint and covering
    assert set(dm.train_dataset.material_ids).isdisjoint(dm.val_dataset.material_ids)
    again = CrystalDataModule(data_root=str(root), preset="perov5-dev", root=str(tmp_path / "cache"),
                              val_fraction=0.2, progress=False)
    assert again.val_dataset.material_ids == dm.val_dataset.material_ids  # seeded
    # models read per-system fields of the (indexed) training set without materialising it
    from dit3d.data.qm9 import graph_values

    assert graph_values(dm.train_dataset, "dataset_idx").tolist() == [CRYSTAL] * 8
    assert sorted(graph_values(dm.train_dataset, "num_atoms").tolist()) == sorted(
        int(d.num_atoms) for d in dm.train_dataset)


def test_presets_are_documented():
    assert SYMPREC == 0.1
    for name, split in DEV_SPLITS.items():
        assert split.train and split.test and split.description, name
        assert bool(split.val) != (split.val_fraction > 0), name


# ------------------------------------------------------------------------ real rows
def real_rows(rel: str, n: int) -> list[dict[str, str]]:
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"shared crystal data not found at {path}")
    opener = gzip.open if rel.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        return [{k: v for k, v in row.items() if k} for _, row in zip(range(n), reader)]


def test_real_perov_and_mp20_rows(tmp_path):
    perov = real_rows("perov_5/val.csv", 4)
    mp = real_rows("mp_20_pilot/val.csv.gz", 5)
    p = write_csv(tmp_path / "perov.csv", perov)
    m = write_csv(tmp_path / "mp.csv.gz", mp)
    ds = load([p, m], tmp_path / "cache")
    assert len(ds) == 9 and ds.failed_rows == []
    assert ds.material_ids == [r["material_id"] for r in perov + mp]
    assert all(int(n) == 5 for n in ds._data.num_atoms[:4])  # Perov-5: five atoms per cell
    # the space group at symprec 0.1 is the Materials Project's own
    assert ds._data.spacegroup[4:].tolist() == [int(r["spacegroup.number"]) for r in mp]
    # lengths and angles are those of pymatgen's Niggli-reduced structure
    for i, row in enumerate(perov + mp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen notes the coordinates it rounds to ideal values
            ref = Structure.from_str(row["cif"], fmt="cif").get_reduced_structure()
        np.testing.assert_allclose(ds[i].lengths[0].numpy(), ref.lattice.abc, rtol=1e-5)
        np.testing.assert_allclose(ds[i].angles[0].numpy(), ref.lattice.angles, atol=1e-3)
        assert ds[i].formula == ref.composition.reduced_formula
    check_consistent(ds)


def test_real_presets_resolve():
    if not SHARED.is_dir():
        pytest.skip(f"shared crystal data not found at {SHARED}")
    for name in DEV_SPLITS:
        files = dev_split_files(name, SHARED)
        assert all(Path(f).is_file() for split in files.values() for f in split)
