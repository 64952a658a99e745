"""CrystalGenerator and the ADiT folder kinds: crystal sampling to pymatgen/ASE/CIF/extxyz,
one joint folder loading as both generators, seeds, space groups, impossible cells and
``dit3d sample|export crystals``."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from dit3d.api import CrystalGenerator, MoleculeGenerator
from dit3d.api_adit import DEFAULT_SAMPLING
from dit3d.chem.crystals import read_cif, read_extxyz
from dit3d.cli import main
from dit3d.models import ADiTLatentModule
from dit3d.pretrained import PretrainedError, load_pretrained, save_pretrained
from dit3d.testing import randomize_
from dit3d.tokenizers import CRYSTAL, MOLECULE, AtomAutoencoder


def latent_module(kinds=(MOLECULE, CRYSTAL), spacegroups: bool = False) -> ADiTLatentModule:
    """An untrained toy latent module (random weights) with hand-set atom-count histograms:
    sampling runs the real code path; what it samples is meaningless."""
    torch.manual_seed(0)
    ae = randomize_(AtomAutoencoder(hidden_size=32, depth=1, num_heads=4, latent_dim=4), std=0.1)  # non-zero heads
    module = ADiTLatentModule(ae.config, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, max_atoms=12,
                              spacegroup_conditioning=spacegroups)
    module.autoencoder.load_state_dict(ae.state_dict())
    randomize_(module.sampling_dit, std=0.1)  # adaLN-Zero starts at zero output: give the labels an effect
    hist = torch.zeros(2, 13)
    if MOLECULE in kinds:
        hist[MOLECULE, 9] = 3.0
        hist[MOLECULE, 5] = 1.0
    if CRYSTAL in kinds:
        hist[CRYSTAL, 4] = 2.0
        hist[CRYSTAL, 2] = 1.0
    module.atom_count_hist.copy_(hist)
    return module.eval()


@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("joint") / "gen"
    CrystalGenerator.from_lightning(latent_module(), {"steps": 3}).save_pretrained(path)
    return path


def test_joint_folder_loads_as_both_generators(joint_dir):
    config, weights = load_pretrained(joint_dir)
    assert config["kind"] == "adit-joint" and weights["atom_count_hist"].shape == (2, 13)
    mols = MoleculeGenerator.from_pretrained(joint_dir).sample_arrays(4, seed=0)
    assert {len(z) for z, _ in mols} <= {5, 9}  # molecule sizes from the molecule histogram
    xtals = CrystalGenerator.from_pretrained(joint_dir).sample_arrays(4, seed=0)
    assert {len(r.atomic_numbers) for r in xtals} <= {2, 4}  # crystal sizes from the crystal histogram


def test_crystal_records_are_wrapped_and_seeded(joint_dir):
    gen = CrystalGenerator.from_pretrained(joint_dir)
    a, b, c = (gen.sample_arrays(5, seed=s) for s in (7, 7, 8))
    for rec in a:
        n = len(rec.atomic_numbers)
        assert rec.frac_coords.shape == (n, 3) and rec.lengths.shape == (3,) and rec.angles.shape == (3,)
        assert ((rec.frac_coords >= 0) & (rec.frac_coords < 1)).all()
        assert ((rec.atomic_numbers >= 1) & (rec.atomic_numbers <= 100)).all()  # never the mask token
    for x, y in zip(a, b):  # bit-identical for one seed
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(x.lengths, y.lengths) for x, y in zip(a, c))


def test_sample_builds_structures_and_ase_atoms(joint_dir, capsys):
    gen = CrystalGenerator.from_pretrained(joint_dir)
    records = gen.sample_arrays(4, seed=1)
    shown = gen.sample_set(4, seed=1, progress=True)  # a bar counting crystals; the same crystals
    assert "sampling crystals:" in capsys.readouterr().err and len(shown.structures) + len(shown.failures) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random decoder may produce an impossible cell
        structures = gen.sample(4, seed=1)
    kept = [int(label.split()[-1]) for label in gen.sample_set(4, seed=1).labels]  # "sample i"
    assert len(structures) == len(kept) <= 4 and all(isinstance(s, Structure) for s in structures)
    for s, rec in zip(structures, [records[i] for i in kept]):
        np.testing.assert_allclose(s.lattice.abc, rec.lengths, rtol=1e-6)
        assert [site.specie.Z for site in s] == rec.atomic_numbers.tolist()
    atoms = gen.to_ase(structures)
    assert all(a.pbc.all() and len(a) == len(s) for a, s in zip(atoms, structures))


def test_impossible_cells_are_counted_not_hidden(joint_dir, monkeypatch):
    gen = CrystalGenerator.from_pretrained(joint_dir)
    real = gen.autoencoder.decode_lattice

    def broken_first(features, num_atoms):  # the first crystal of each batch gets a negative length
        lengths, angles = real(features, num_atoms)
        lengths = lengths.clone()
        lengths[0, 0] = -1.0
        return lengths, angles

    monkeypatch.setattr(gen.autoencoder, "decode_lattice", broken_first)
    result = gen.sample_set(3, seed=0)
    assert result.num_records == 3 and len(result.failures) >= 1
    assert "non-positive lattice length" in result.failures[0]["reason"]
    with pytest.warns(UserWarning, match="impossible cells"):
        assert len(gen.sample(3, seed=0)) == len(result.structures)


def test_folder_kinds_refuse_the_wrong_generator(tmp_path):
    CrystalGenerator.from_lightning(latent_module((CRYSTAL,))).save_pretrained(tmp_path / "x")
    MoleculeGenerator.from_lightning(latent_module((MOLECULE,))).save_pretrained(tmp_path / "m")
    assert load_pretrained(tmp_path / "x")[0]["kind"] == "adit-crystals"
    assert load_pretrained(tmp_path / "m")[0]["kind"] == "adit-molecules"
    with pytest.raises(PretrainedError, match="expected one of 'adit-molecules', 'adit-joint'"):
        MoleculeGenerator.from_pretrained(tmp_path / "x")
    with pytest.raises(PretrainedError, match="expected one of 'adit-crystals', 'adit-joint'"):
        CrystalGenerator.from_pretrained(tmp_path / "m")
    with pytest.raises(PretrainedError, match="never trained on crystals"):  # a joint module without crystals
        CrystalGenerator.from_lightning(latent_module((MOLECULE,)))


def test_older_molecule_folders_with_one_histogram_still_load(tmp_path):
    gen = MoleculeGenerator.from_lightning(latent_module((MOLECULE,)), {"steps": 2})
    state = {f"autoencoder.{k}": v for k, v in gen.autoencoder.state_dict().items()}
    state |= {f"dit.{k}": v for k, v in gen.dit.state_dict().items()}
    state |= {"latent_mean": gen.latent_mean, "latent_std": gen.latent_std,
              "atom_count_hist": gen.atom_count_hist[MOLECULE]}  # the 1-D layout of adit-qm9-cpu
    config = {"autoencoder": gen.autoencoder.config, "dit": gen.dit.config, "flow": gen.flow_config,
              "sampling": gen.sampling}
    save_pretrained(tmp_path / "old", "adit-molecules", config, state)
    old = MoleculeGenerator.from_pretrained(tmp_path / "old")
    assert old.atom_count_hist.shape == (2, 13)
    assert [z.tolist() for z, _ in old.sample_arrays(3, seed=2)] == [z.tolist() for z, _ in gen.sample_arrays(3, seed=2)]


def test_spacegroup_sampling_and_argument_errors(tmp_path):
    gen = CrystalGenerator.from_lightning(latent_module(spacegroups=True), {"steps": 2})
    assert gen.spacegroup_conditioning
    a = gen.sample_arrays(2, seed=0, spacegroup=225)
    b = gen.sample_arrays(2, seed=0)
    assert any(not np.array_equal(x.lengths, y.lengths) for x, y in zip(a, b))  # the label matters
    plain = CrystalGenerator.from_lightning(latent_module(), {"steps": 2})
    for call, msg in ((lambda: plain.sample_arrays(2, spacegroup=225), "without space groups"),
                      (lambda: gen.sample_arrays(2, spacegroup=231), "1..230"),
                      (lambda: gen.sample_arrays(0), "positive int"),
                      (lambda: gen.sample_arrays(2, seed="x"), "seed must be an int"),
                      (lambda: gen.sample_arrays(2, steps=0), "steps must be a positive int"),
                      (lambda: gen.sample_arrays(2, eta=1.0), "unknown sampling options")):
        with pytest.raises(ValueError, match=msg):
            call()


def dit3d_cli(*args: str) -> None:
    main(list(args))  # in-process: a subprocess per call costs seconds of imports


def test_cli_samples_crystals_to_extxyz_cif_and_folder(joint_dir, tmp_path):
    for name in ("out.extxyz", "out.cif", "cifs"):
        out = tmp_path / name
        dit3d_cli("sample", "crystals", "--checkpoint", str(joint_dir), "-n", "3", "-o", str(out), "--seed", "1",
                  "--steps", "2")
        read = read_extxyz(out) if name.endswith("extxyz") else (
            read_cif(out) if name.endswith("cif") else [read_cif(p)[0] for p in sorted(out.glob("*.cif"))])
        assert 1 <= len(read) <= 3 and all(isinstance(s, Structure) for s in read)
    dit3d_cli("sample", "crystals", "--checkpoint", str(joint_dir), "-n", "3", "-o", str(tmp_path / "q.extxyz"),
              "--steps", "2", "--int8")
    int8 = CrystalGenerator.from_pretrained(joint_dir).quantize_int8()
    expected = int8.sample(3, seed=0, steps=2)
    assert [s.composition for s in read_extxyz(tmp_path / "q.extxyz")] == [s.composition for s in expected]
    floats = CrystalGenerator.from_pretrained(joint_dir).sample_arrays(3, seed=0, steps=2)
    ints = int8.sample_arrays(3, seed=0, steps=2)
    assert any(not np.array_equal(a.frac_coords, b.frac_coords) for a, b in zip(floats, ints))  # int8 did run
    with pytest.raises(SystemExit, match="must end in .extxyz or .cif"):
        dit3d_cli("sample", "crystals", "--checkpoint", str(joint_dir), "-o", str(tmp_path / "x.pdb"))
    with pytest.raises(SystemExit, match="--overwrite"):
        dit3d_cli("sample", "crystals", "--checkpoint", str(joint_dir), "-o", str(tmp_path / "cifs"))
    with pytest.raises(SystemExit, match="without space groups"):
        dit3d_cli("sample", "crystals", "--checkpoint", str(joint_dir), "-o", str(tmp_path / "y.cif"),
                  "--spacegroup", "225")
    assert not (tmp_path / "y.cif").exists()


def test_cli_export_crystals_writes_the_joint_kind(tmp_path):
    from lightning.pytorch import Trainer

    module = latent_module()
    trainer = Trainer(accelerator="cpu", logger=False, max_steps=0, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "latent.ckpt")
    dit3d_cli("export", "crystals", str(tmp_path / "latent.ckpt"), "-o", str(tmp_path / "gen"), "--steps", "7",
              "--note", "run=test")
    config = json.loads((tmp_path / "gen" / "config.json").read_text())
    assert config["kind"] == "adit-joint" and config["sampling"]["steps"] == 7
    assert config["sampling"]["solver"] == "heun" == DEFAULT_SAMPLING["solver"]  # the ADiT default, unset here
    assert config["provenance"]["run"] == "test" and config["weights_dtype"] == "float32"
    dit3d_cli("export", "crystals", str(tmp_path / "latent.ckpt"), "-o", str(tmp_path / "half"), "--steps", "7",
              "--weights-dtype", "float16")
    full, half = (CrystalGenerator.from_pretrained(tmp_path / d) for d in ("gen", "half"))
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert size("half") < 0.6 * size("gen")
    assert next(half.dit.parameters()).dtype == torch.float32  # computes in float32 again
    a, b = full.sample_arrays(3, seed=0)[0], half.sample_arrays(3, seed=0)[0]
    np.testing.assert_allclose(a.lengths, b.lengths, rtol=0.05)  # half-rounded weights: close, not equal
