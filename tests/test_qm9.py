"""QM9 dataset and data module: real data, real split, cache behaviour, batching."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset
from torch_geometric.loader import DataLoader

import dit3d.data.qm9 as qm9_module
from dit3d.data import QM9, QM9DataModule, atom_count_histogram, qm9_smiles
from dit3d.data.qm9 import collate_molecules, default_root, element_counts, read_qm9pack_csv

NUM_MOLECULES = 130_831
CSV_HEADER = "XYZ_file,Index,SMILES,InChi,N_atoms,Elements,XYZ_Ang\n"


def test_methane_is_first_molecule(qm9_root):
    ds = QM9(split="all")  # default root comes from DIT3D_CACHE, set by the fixture
    assert ds.root == qm9_root
    mol = ds[0]
    assert mol.qm9_index.tolist() == [1] and mol.smiles == "C"
    assert mol.atom_types.tolist() == [6, 1, 1, 1, 1]
    assert mol.atom_types.dtype == torch.long and mol.pos.dtype == torch.float32
    assert mol.num_nodes == 5 and mol.num_atoms.tolist() == [5]
    ch = (mol.pos[1:] - mol.pos[0]).norm(dim=-1)
    assert torch.allclose(ch, torch.full((4,), 1.09), atol=0.01), ch
    # Positions are stored as in the source file, not centred.
    assert torch.allclose(mol.pos[0], torch.tensor([-0.0126981359, 1.0858041578, 0.0080009958]))
    # Zero-filled crystal fields of the shared molecule/crystal representation.
    assert mol.frac_coords.shape == (5, 3) and not mol.frac_coords.any()
    for key, shape in (("cell", (1, 3, 3)), ("lengths", (1, 3)), ("angles", (1, 3))):
        assert mol[key].shape == shape and not mol[key].any()
    assert mol.dataset_idx.tolist() == [0] and mol.spacegroup.tolist() == [0]


def test_split_sizes_disjoint_reproducible(qm9_root):
    splits = {s: QM9(qm9_root, split=s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 100_000, "val": 18_000, "test": 12_831}
    idx = torch.cat([d.split_indices for d in splits.values()])
    assert idx.unique().numel() == NUM_MOLECULES  # disjoint and covering
    perm = torch.randperm(NUM_MOLECULES, generator=torch.Generator().manual_seed(9))
    assert torch.equal(idx, perm)  # ADiT's protocol
    assert torch.equal(QM9(qm9_root, split="train").split_indices, splits["train"].split_indices)
    assert splits["train"].protocol["seed"] == 9
    assert splits["train"].protocol["source_version"] == qm9_module._qm9pack_version()
    # The split indices are rows of "all": molecule i of a split is row split_indices[i].
    full = QM9(qm9_root, split="all")
    test = splits["test"]
    assert torch.equal(full.qm9_index[test.split_indices], test.qm9_index)
    for i in (0, 7, len(test) - 1):
        row = int(test.split_indices[i])
        assert torch.equal(full[row].pos, test[i].pos) and full[row].smiles == test[i].smiles


def test_cache_is_reused(qm9_root):
    processed = Path(qm9_root, "processed")
    mtimes = {p.name: p.stat().st_mtime_ns for p in processed.iterdir()}
    assert {"train.pt", "val.pt", "test.pt", "all.pt", "split.pt"} <= set(mtimes)
    assert not any(name.endswith(".tmp") for name in mtimes)  # atomic writes left no temp files
    start = time.perf_counter()
    ds = QM9(qm9_root, split="train")
    elapsed = time.perf_counter() - start
    assert len(ds) == 100_000
    assert elapsed < 5.0, f"cached load took {elapsed:.1f}s"
    assert {p.name: p.stat().st_mtime_ns for p in processed.iterdir()} == mtimes


def test_cache_loads_without_source(qm9_root, monkeypatch):
    monkeypatch.setattr(qm9_module, "_qm9pack_data_dir", lambda: None)
    assert len(QM9(qm9_root, split="val", subset=3)) == 3


def test_missing_source_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(qm9_module, "_qm9pack_data_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install qm9pack"):
        QM9(str(tmp_path), split="train")


def test_stale_cache_is_rebuilt(tmp_path):
    processed = tmp_path / "processed"
    processed.mkdir()
    torch.save({"format_version": -1}, processed / "split.pt")
    with pytest.warns(UserWarning, match="rebuilding the QM9 cache"):
        ds = QM9(str(tmp_path), split="val", subset=2)
    assert len(ds) == 2 and ds.protocol["format_version"] == qm9_module.FORMAT_VERSION
    shutil.rmtree(tmp_path, ignore_errors=True)  # a full cache; pytest would keep it for 3 sessions


def test_subset(qm9_root):
    full = QM9(qm9_root, split="val")
    sub = QM9(qm9_root, split="val", subset=10)
    assert len(sub) == 10 and len(sub.smiles) == 10 and sub.split_indices.numel() == 10
    assert sub.smiles == full.smiles[:10]
    assert torch.equal(sub.split_indices, full.split_indices[:10])
    for i in (0, 9):
        assert torch.equal(sub[i].pos, full[i].pos) and torch.equal(sub[i].atom_types, full[i].atom_types)


def test_batching(qm9_root):
    ds = QM9(qm9_root, split="all", subset=6)
    mols = [ds[i] for i in range(4)]
    batch = Batch.from_data_list(mols)
    counts = torch.tensor([m.num_nodes for m in mols])
    assert batch.num_graphs == 4
    assert torch.equal(batch.batch, torch.repeat_interleave(torch.arange(4), counts))
    assert torch.equal(batch.ptr, torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]))
    assert batch.dataset_idx.tolist() == [0, 0, 0, 0]
    assert batch.qm9_index.tolist() == [1, 2, 3, 4]  # not offset by node counts
    assert batch.cell.shape == (4, 3, 3) and batch.lengths.shape == (4, 3)
    assert batch.pos.shape == (int(counts.sum()), 3) and batch.smiles[:2] == ["C", "N"]
    assert torch.equal(batch.num_atoms, counts)
    loader_batch = next(iter(DataLoader(ds, batch_size=4)))
    assert torch.equal(loader_batch.batch, batch.batch)


def test_collate_matches_pyg(qm9_root):
    """The direct storage builder gives what PyG's own collate gives."""
    ds = QM9(qm9_root, split="all", subset=5)
    mols = [Data(**{k: v for k, v in ds[i].to_dict().items()}) for i in range(5)]
    expected, expected_slices = InMemoryDataset.collate(mols)
    raw = qm9_module.QM9Arrays(ds.qm9_index, ds.num_atoms, ds.smiles, ds.atom_types, ds.pos)
    data, slices = collate_molecules(raw)
    assert set(slices) == set(expected_slices)
    for key, value in expected_slices.items():
        assert torch.equal(slices[key], value), key
    for key in expected.keys():
        if key == "smiles":
            assert data.smiles == expected.smiles
        else:
            assert torch.equal(data[key], expected[key]), key
    # PyG keeps a lone example as itself, without slices; so must the direct builder.
    one, one_slices = collate_molecules(qm9_module.QM9Arrays(
        ds.qm9_index[:1], ds.num_atoms[:1], ds.smiles[:1], ds.atom_types[:5], ds.pos[:5]))
    assert one_slices is None and InMemoryDataset.collate(mols[:1])[1] is None
    assert one.smiles == "C" and one.to_dict().keys() == mols[0].to_dict().keys()


def test_transform(qm9_root):
    ds = QM9(qm9_root, split="val", subset=2, transform=lambda d: d.update({"pos": d.pos - d.pos.mean(0)}))
    assert torch.allclose(ds[0].pos.mean(0), torch.zeros(3), atol=1e-5)


def test_atom_count_histogram(qm9_root):
    full = QM9(qm9_root, split="all")
    hist = atom_count_histogram(full)
    assert hist.dtype == torch.long and int(hist.sum()) == NUM_MOLECULES
    assert hist.numel() == 30 and int(hist[:3].sum()) == 0  # QM9 molecules have 3..29 atoms
    small = QM9(qm9_root, split="train", subset=50)
    assert torch.equal(atom_count_histogram(small), atom_count_histogram([small[i] for i in range(50)]))
    view = small[torch.arange(10, 20)]  # an index view goes through the stored counts too
    assert torch.equal(atom_count_histogram(view), atom_count_histogram([small[i] for i in range(10, 20)]))
    with pytest.raises(ValueError, match="empty"):
        atom_count_histogram([])


def test_element_counts(qm9_root):
    ds = QM9(split="val")[:40]  # an index view: counts follow its order, read from the storage
    counts = element_counts(ds, 10)
    assert counts.shape == (40, 10)
    assert counts[:, [1, 6, 7, 8, 9]].sum(-1).tolist() == [d.num_nodes for d in ds]
    for i in (0, 17, 39):
        assert counts[i].tolist() == torch.bincount(ds[i].atom_types.long(), minlength=10).tolist()
    assert torch.equal(element_counts(list(ds), 10), counts)  # a plain list, read one by one
    assert element_counts([], 10).shape == (0, 10)
    empty_last = [Data(atom_types=torch.tensor([6, 1])), Data(atom_types=torch.zeros(0, dtype=torch.long))]
    assert element_counts(empty_last, 7).tolist() == [[0, 1, 0, 0, 0, 0, 1], [0] * 7]  # a system with no atoms
    with pytest.raises(ValueError, match="raise num_types"):
        element_counts(ds, 7)  # columns 0..6 leave out N, O and F


def test_qm9_smiles(qm9_root):
    smiles = qm9_smiles("train")
    assert len(smiles) == 100_000 and all(isinstance(s, str) and s for s in smiles[:100])
    one = QM9(qm9_root, split="train", subset=1)
    assert len(one) == 1 and one.smiles == smiles[:1] and one[0].smiles == smiles[0]
    assert one[0].num_nodes == one[0].num_atoms.item()


def test_bad_inputs(qm9_root):
    with pytest.raises(ValueError, match="unknown split 'training'"):
        QM9(qm9_root, split="training")
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="subset must be a positive int"):
            QM9(qm9_root, split="val", subset=bad)
    with pytest.raises(ValueError, match="exceeds the 18000 molecules"):
        QM9(qm9_root, split="val", subset=18_001)
    with pytest.raises(ValueError, match="batch_size"):
        QM9DataModule(batch_size=0)
    with pytest.raises(ValueError, match="unknown stage"):
        QM9DataModule().setup("training")


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("DIT3D_CACHE", str(tmp_path / "c"))
    assert default_root() == str(tmp_path / "c" / "qm9")
    monkeypatch.delenv("DIT3D_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == str(tmp_path / "xdg" / "dit3d" / "qm9")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root() == os.path.join(str(tmp_path), ".cache", "dit3d", "qm9")


def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text(CSV_HEADER + "".join(r + "\n" for r in rows))
    return path


def test_parser_errors(tmp_path):
    ok = '"a.xyz",1,"O","x",3,"[\'O\',\'H\',\'H\']","[[0,0,0],[0.96,0,0],[-0.24,0.93,0]]"'
    raw = read_qm9pack_csv([_write_csv(tmp_path / "ok.csv", [ok])])
    assert raw.atom_types.tolist() == [8, 1, 1] and raw.pos.shape == (3, 3)
    unknown = '"b.xyz",2,"O","x",2,"[\'O\',\'Xx\']","[[0,0,0],[1,0,0]]"'
    with pytest.raises(ValueError, match=r"unknown element 'Xx' in row 1 \(b.xyz\)"):
        read_qm9pack_csv([_write_csv(tmp_path / "unknown.csv", [ok, unknown])])
    short = '"c.xyz",3,"O","x",2,"[\'O\',\'H\']","[[0,0,0],[1,0]]"'
    with pytest.raises(ValueError, match=r"row 0 \(c.xyz\) has 5 coordinate values, expected 6"):
        read_qm9pack_csv([_write_csv(tmp_path / "short.csv", [short])])
    nan = '"d.xyz",4,"O","x",1,"[\'O\']","[[0,zz,0]]"'
    with pytest.raises(ValueError, match="not a number"):
        read_qm9pack_csv([_write_csv(tmp_path / "nan.csv", [nan])])


def test_datamodule(qm9_root):
    dm = QM9DataModule(batch_size=8, train_subset=64, val_subset=20, test_subset=12)
    assert dm.hparams.batch_size == 8 and dm.hparams.root is None
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 8 and batch.batch.max().item() == 7
    assert batch.dataset_idx.tolist() == [0] * 8
    assert [b.num_graphs for b in dm.val_dataloader()] == [8, 8, 4]
    # Seeded shuffle: a second module replays the order, which differs from dataset order.
    again = QM9DataModule(batch_size=8, train_subset=64)
    order = [b.qm9_index.tolist() for b in dm.train_dataloader()]
    assert order == [b.qm9_index.tolist() for b in again.train_dataloader()]
    assert sum(order, []) != dm.train_dataset.qm9_index.tolist()
    dm.setup("test")
    assert len(dm.test_dataset) == 12 and next(iter(dm.test_dataloader())).num_graphs == 8
