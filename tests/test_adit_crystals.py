"""ADiT on crystals and on joint molecule + crystal data: lattice normalisation, periodic
augmentation, a mixed-batch autoencoder, the joint data module and the latent DiT on it."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from lightning.pytorch import Trainer
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from torch_geometric.data import Batch

from dit3d.api import CrystalGenerator, MoleculeGenerator
from dit3d.data import QM9, CrystalDataset, JointDataModule, MixedBatchSampler, shared_fields
from dit3d.models import ADiTAutoencoderModule, ADiTLatentModule
from dit3d.models.adit_autoencoder import min_image
from dit3d.models.adit_latent import load_latent_checkpoint
from dit3d.models.adit_sampling import cell_from_parameters, decode_crystals
from dit3d.testing import randomize_
from dit3d.tokenizers import CRYSTAL, MOLECULE, AtomAutoencoder, Atoms, lattice_features, lattice_from_features
from dit3d.tokenizers.augment import augment, center_molecules, corrupt, rotate_and_center, wrap_frac


def structures() -> list[Structure]:
    """Small hand-made crystals (P1 listings: quick to parse), a few lattice constants each."""
    out = []
    for a in (5.5, 5.64, 5.8):  # rock salt, conventional cell
        out.append(Structure(Lattice.cubic(a), ["Na"] * 4 + ["Cl"] * 4,
                             [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                              [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]]))
    for a in (3.9, 4.0):  # cubic perovskite SrTiO3
        out.append(Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                             [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]))
    for a in (4.1, 4.2):  # CsCl
        out.append(Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]]))
    out.append(Structure(Lattice.hexagonal(3.2, 5.2), ["Zn", "Zn", "O", "O"],  # wurtzite-like, non-cubic
                         [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, .5], [1 / 3, 2 / 3, .38], [2 / 3, 1 / 3, .88]]))
    return out


def write_csv(path, rows: list[Structure], prefix: str = "x"):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["", "material_id", "cif"])
        w.writeheader()
        for i, s in enumerate(rows):
            w.writerow({"": str(i), "material_id": f"{prefix}{i}", "cif": str(CifWriter(s))})
    return path


@pytest.fixture(scope="module")
def crystal_csvs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xtal")
    s = structures()
    return {"train": str(write_csv(tmp / "train.csv", s)), "val": str(write_csv(tmp / "val.csv", s[::3], "v")),
            "cache": str(tmp / "cache")}


@pytest.fixture(scope="module")
def crystals(crystal_csvs):
    return CrystalDataset([crystal_csvs["train"]], root=crystal_csvs["cache"], progress=False)


@pytest.fixture(scope="module")
def mixed_batch(qm9_root, crystals):
    mols = [shared_fields(QM9(split="train", subset=8)[i]) for i in range(8)]
    xtals = [shared_fields(crystals[i]) for i in range(len(crystals))]
    return Batch.from_data_list(mols + xtals)


def crystal_atoms(crystals) -> Atoms:
    return Atoms.from_pyg(Batch.from_data_list([shared_fields(crystals[i]) for i in range(len(crystals))]))


# ------------------------------------------------------------------ lattice normalisation
def test_lattice_normalisation_round_trip_and_scale(crystals):
    atoms = crystal_atoms(crystals)
    feats = lattice_features(atoms.lattice, atoms.num_atoms)
    lengths, angles = lattice_from_features(feats, atoms.num_atoms)
    torch.testing.assert_close(torch.cat([lengths, angles], -1), atoms.lattice, atol=1e-4, rtol=1e-5)
    assert feats.abs().max() < 5  # standardised: of order 1, not Angstrom^2 or degrees
    # lengths divided by N^(1/3), angles in radians, before the standardisation
    ones, zeros = [1.0] * 6, [0.0] * 6
    raw = lattice_features(atoms.lattice, atoms.num_atoms, zeros, ones)
    torch.testing.assert_close(raw[:, :3], atoms.lattice[:, :3] / atoms.num_atoms[:, None].float() ** (1 / 3))
    torch.testing.assert_close(raw[:, 3:], atoms.lattice[:, 3:] * math.pi / 180)
    ae = AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4, lattice_mean=zeros, lattice_std=ones)
    torch.testing.assert_close(ae.lattice_target(atoms), raw)
    assert ae.config["lattice_std"] == ones  # non-default statistics travel in the config
    assert "lattice_mean" not in AtomAutoencoder(hidden_size=24, depth=1, num_heads=4).config
    with pytest.raises(ValueError, match="positive"):
        lattice_features(atoms.lattice, atoms.num_atoms, zeros, zeros)
    # cell_from_parameters matches the stored (Lattice.from_parameters) orientation
    torch.testing.assert_close(cell_from_parameters(atoms.lattice[:, :3], atoms.lattice[:, 3:]), atoms.cell,
                               atol=1e-4, rtol=1e-4)


def test_autoencoder_loads_weights_saved_before_the_lattice_options(tmp_path):
    ae = AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4)
    assert not any("lattice_mean" in k for k in ae.state_dict())  # statistics are config, not weights
    ae.save_pretrained(tmp_path / "ae")
    AtomAutoencoder.from_pretrained(tmp_path / "ae")


# ---------------------------------------------------------------------------- augmentation
def test_rotation_rotates_pos_and_cell_together_and_keeps_frac(crystals):
    atoms = crystal_atoms(crystals)
    out = augment(atoms, torch.Generator().manual_seed(0), translate_crystals=False)
    m = atoms.mask
    torch.testing.assert_close(out.frac_coords, atoms.frac_coords)
    torch.testing.assert_close(out.pos, out.frac_coords @ out.cell, atol=1e-4, rtol=1e-5)
    # the cell is rotated (a rigid motion: same lengths and Gram matrix), not left alone
    assert not torch.allclose(out.cell, atoms.cell, atol=1e-2)
    gram = lambda c: c @ c.transpose(1, 2)  # noqa: E731
    torch.testing.assert_close(gram(out.cell), gram(atoms.cell), atol=1e-3, rtol=1e-4)
    rot = torch.linalg.solve(atoms.cell, out.cell)  # cell' = cell @ R^T
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand_as(rot), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.lattice, atoms.lattice)
    assert torch.all(out.pos[~m] == 0)


def test_translation_wraps_frac_coords(crystals):
    atoms = crystal_atoms(crystals)
    out = augment(atoms, torch.Generator().manual_seed(1))
    m = atoms.mask
    assert ((out.frac_coords >= 0) & (out.frac_coords < 1))[m].all()
    shift = min_image(out.frac_coords - atoms.frac_coords)  # one shift per crystal, modulo 1
    spread = (shift - shift[:, :1]) * m[..., None]
    assert min_image(spread).abs().max() < 1e-5
    assert shift[:, 0].abs().max() > 0.01  # it did move
    torch.testing.assert_close(out.pos, out.frac_coords @ out.cell, atol=1e-4, rtol=1e-5)
    assert torch.all(out.frac_coords[~m] == 0) and torch.all(out.pos[~m] == 0)
    assert wrap_frac(torch.tensor([1.0, -0.25, 1.5, -1e-9])).tolist() == pytest.approx([0.0, 0.75, 0.5, 0.0])


def test_mixed_augmentation_centres_molecules_only(mixed_batch):
    atoms = Atoms.from_pyg(mixed_batch)
    out = augment(atoms, torch.Generator().manual_seed(2))
    mol = atoms.dataset_idx == MOLECULE
    w = atoms.mask[..., None].float()
    centroid = (out.pos * w).sum(1) / w.sum(1)
    assert centroid[mol].abs().max() < 1e-4
    xtal = ~mol
    torch.testing.assert_close(out.pos[xtal], (out.frac_coords @ out.cell)[xtal] * w[xtal], atol=1e-4, rtol=1e-5)
    assert torch.equal(out.frac_coords[mol], atoms.frac_coords[mol])  # zeros stay zeros
    # molecule-only batches reproduce rotate_and_center exactly (same draws)
    mols = atoms.select(mol)
    a = augment(mols, torch.Generator().manual_seed(3))
    b = rotate_and_center(mols, torch.Generator().manual_seed(3))
    assert torch.equal(a.pos, b.pos)
    ev = center_molecules(atoms)
    assert torch.equal(ev.pos[xtal], atoms.pos[xtal])
    with pytest.raises(ValueError, match="cell"):
        augment(Atoms(atoms.atom_types, atoms.pos, atoms.frac_coords, atoms.mask, atoms.lattice, atoms.dataset_idx))


def test_corruption_keeps_crystal_frac_consistent_with_jittered_pos(crystals):
    atoms = augment(crystal_atoms(crystals), torch.Generator().manual_seed(4))
    noisy = corrupt(atoms, mask_prob=0.0, jitter_prob=0.5, jitter_std=0.1, generator=torch.Generator().manual_seed(5))
    m = atoms.mask
    moved = (noisy.pos - atoms.pos).norm(dim=-1) > 0
    assert moved[m].any() and not moved[~m].any()
    expected = noisy.pos @ torch.linalg.inv(atoms.cell)  # f = x L^-1, before wrapping
    torch.testing.assert_close(min_image(noisy.frac_coords - expected) * m[..., None], torch.zeros_like(expected),
                               atol=1e-4, rtol=0)
    assert ((noisy.frac_coords >= 0) & (noisy.frac_coords < 1))[m].all()
    assert torch.equal(noisy.frac_coords[~moved], atoms.frac_coords[~moved])


# ------------------------------------------------------------------------- autoencoder
def test_mixed_batch_training_reduces_loss_with_unit_scale_lattice_loss(mixed_batch):
    torch.manual_seed(0)
    module = ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, lr=3e-3, warmup_steps=1)
    module.log = module.log_dict = lambda *a, **k: None  # no trainer attached
    opt = module.configure_optimizers()["optimizer"]
    atoms = Atoms.from_pyg(mixed_batch)
    assert sorted(atoms.dataset_idx.tolist()) == [0] * 8 + [1] * 8
    # the encoder sees types + Cartesian MLP + fractional MLP: crystals' frac coords change its output
    shifted = Atoms(atoms.atom_types, atoms.pos, wrap_frac(atoms.frac_coords + 0.25) * atoms.mask[..., None],
                    atoms.mask, atoms.lattice, atoms.dataset_idx, atoms.cell)
    xtal = atoms.dataset_idx == CRYSTAL
    probe = randomize_(AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4))  # adaLN-Zero: 0 at init
    with torch.no_grad():
        assert not torch.allclose(probe.encode(shifted)[0][xtal], probe.encode(atoms)[0][xtal], atol=1e-4)
    from dit3d.models.adit_autoencoder import reconstruction_losses

    with torch.no_grad():
        out, _, _ = module(augment(atoms))
        init = reconstruction_losses(out, atoms, module.autoencoder.lattice_target(atoms))
    assert 0.05 < init["lattice"].item() < 10, init["lattice"]  # order 1, not the thousands of raw degrees
    losses = []
    for _ in range(60):
        loss = module.training_step(mixed_batch, 0)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] < 100 and sum(losses[-5:]) / 5 < 0.5 * losses[0], losses
    with torch.no_grad():
        out, _, _ = module(center_molecules(atoms), sample=False)
        after = reconstruction_losses(out, atoms, module.autoencoder.lattice_target(atoms))
    assert after["lattice"] < init["lattice"] and torch.isfinite(after["frac"])
    # per-kind validation metrics, with lattice errors in Angstrom and degrees
    logged = {}
    module.log_dict = lambda d, **k: logged.update({key: float(v.detach()) for key, v in d.items()})
    module.validation_step(mixed_batch, 0)
    for key in ("val/match_rate", "val/rmsd", "val/crystal/match_rate", "val/crystal/rmsd",
                "val/crystal/lengths_mae", "val/crystal/angles_mae"):
        assert key in logged and math.isfinite(logged[key]), key
    # decoding crystals: wrapped frac coords, lattice in Angstrom/degrees, pos = frac @ cell
    z = module.autoencoder.encode(atoms.select(xtal))[0]
    dec = decode_crystals(module.autoencoder, z, atoms.select(xtal).mask)
    assert ((dec["frac_coords"] >= 0) & (dec["frac_coords"] < 1)).all()
    assert dec["lengths"].shape == dec["angles"].shape == (8, 3)
    assert (dec["atom_types"][atoms.select(xtal).mask] > 0).all()


def test_per_dataset_loss_weights(mixed_batch):
    module = ADiTAutoencoderModule(hidden_size=16, depth=1, num_heads=4, latent_dim=4, crystal_type_weight=0.0,
                                   pos_weight=0.0, frac_weight=0.0, lattice_weight=0.0, kl_weight=0.0)
    atoms = Atoms.from_pyg(mixed_batch)
    losses = {"type": torch.tensor(2.0), "type_molecule": torch.tensor(1.0), "type_crystal": torch.tensor(5.0),
              "pos": torch.tensor(3.0), "frac": torch.tensor(4.0), "lattice": torch.tensor(6.0), "kl": torch.tensor(7.0)}
    n_mol = int(atoms.mask[atoms.dataset_idx == MOLECULE].sum())
    share = n_mol / int(atoms.mask.sum())
    assert module.total_loss(losses, atoms).item() == pytest.approx(share * 1.0)  # molecule types only
    module.hparams.crystal_type_weight = None  # same weight for both: the plain atom mean
    module.hparams.frac_weight, module.hparams.lattice_weight = 10.0, 2.0
    expected = share * 1.0 + (1 - share) * 5.0 + 40.0 + 12.0
    assert module.total_loss(losses, atoms).item() == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------ joint data
def test_mixed_batch_sampler_ratio_seed_and_errors():
    s = MixedBatchSampler([10, 4], [3, 1], seed=5)
    batches = list(s)
    assert len(batches) == len(s) == 4  # the crystals take 4 // 1 batches to be read once; molecules cycle
    assert all(sum(i < 10 for i in b) == 3 and sum(i >= 10 for i in b) == 1 and len(set(b)) == 4 for b in batches)
    assert batches == list(MixedBatchSampler([10, 4], [3, 1], seed=5))
    s.set_epoch(1)
    assert list(s) != batches
    with pytest.raises(ValueError, match="lower the batch size"):
        MixedBatchSampler([10, 2], [3, 3])


def test_joint_datamodule_mixes_kinds_in_the_configured_ratio(qm9_root, crystal_csvs):
    crystals = {"train_files": [crystal_csvs["train"]], "val_files": [crystal_csvs["val"]],
                "root": crystal_csvs["cache"], "progress": False}
    dm = JointDataModule(qm9={"train_subset": 64, "val_subset": 8, "test_subset": 8}, crystals=crystals,
                         batch_size=8, crystal_fraction=0.25, seed=1)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.per_batch == {"molecule": 6, "crystal": 2}
    batches = list(dm.train_dataloader())
    assert len(batches) == 64 // 6
    for b in batches:
        atoms = Atoms.from_pyg(b)  # the two kinds collate into one batch
        assert atoms.dataset_idx.tolist() == [MOLECULE] * 6 + [CRYSTAL] * 2
        assert atoms.cell is not None and atoms.spacegroup is not None
    again = [b.num_atoms.tolist() for b in dm.train_dataloader()]
    assert again == [b.num_atoms.tolist() for b in JointDataModule(
        qm9={"train_subset": 64}, crystals=crystals, batch_size=8, crystal_fraction=0.25, seed=1).train_dataloader()]
    kinds = dm.train_dataset.graph_values("dataset_idx")
    assert kinds.tolist() == [0] * 64 + [1] * len(structures())
    val = dm.val_dataloader()
    assert dm.val_kinds == ["molecule", "crystal"] and len(val) == 2
    assert set(next(iter(val[0])).dataset_idx.tolist()) == {MOLECULE}
    assert set(next(iter(val[1])).dataset_idx.tolist()) == {CRYSTAL}
    only = JointDataModule(crystals=crystals, batch_size=4, crystal_fraction=1.0)
    assert only.per_batch == {"molecule": 0, "crystal": 4} and "molecule" not in only.modules
    for kw, msg in (({"crystal_fraction": 1.5}, "crystal_fraction"), ({"crystal_fraction": 0.5}, "needs crystals"),
                    ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=msg):
            JointDataModule(**kw)


# ------------------------------------------------------------------------ latent DiT
def fit_tiny_joint_latent(qm9_root, crystal_csvs, tmp_path, **options):
    """A DiT-Mini latent model fitted two steps on 32 QM9 molecules (from ``qm9_root``, the
    fixture that points QM9 at the test copy) and the test crystals, with ``options`` for
    :class:`ADiTLatentModule`; returns (module, trainer, data, autoencoder)."""
    torch.manual_seed(0)
    crystals = {"train_files": [crystal_csvs["train"]], "val_files": [crystal_csvs["val"]],
                "root": crystal_csvs["cache"], "progress": False}
    dm = JointDataModule(qm9={"train_subset": 32, "val_subset": 4}, crystals=crystals, batch_size=8,
                         crystal_fraction=0.5, batches_per_epoch=2)
    ae = AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4)
    latent = ADiTLatentModule(ae.config, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, warmup_steps=1,
                              stats_batches=2, max_atoms=32, **options)
    latent.autoencoder.load_state_dict(ae.state_dict())
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1,
                      num_sanity_val_steps=0, val_check_interval=2, callbacks=[], enable_checkpointing=False)
    trainer.fit(latent, datamodule=dm)
    return latent, trainer, dm, ae


def test_latent_dit_trains_on_joint_data_with_spacegroups(qm9_root, crystal_csvs, tmp_path):
    latent, trainer, dm, ae = fit_tiny_joint_latent(qm9_root, crystal_csvs, tmp_path,
                                                       spacegroup_conditioning=True)
    assert trainer.global_step == 2
    hist = latent.atom_count_hist
    assert hist[MOLECULE].sum() == 32 and hist[CRYSTAL].sum() == len(structures())  # per-kind histograms
    assert hist[CRYSTAL, 8] == 3 and hist[CRYSTAL, 2] == 2  # three rock salts, two CsCl
    for key in ("val/loss", "val/crystal/loss"):
        assert math.isfinite(float(trainer.callback_metrics[key])), key
    # labels: molecule 0, crystal of space group s -> 1 + s, "any crystal" 1
    atoms = Atoms.from_pyg(next(iter(dm.train_dataloader())))
    y = latent.labels(atoms)
    assert (y[atoms.dataset_idx == MOLECULE] == 0).all()
    assert set(y[atoms.dataset_idx == CRYSTAL].tolist()) <= {1 + s for s in (221, 225, 186)}
    assert latent.label_for(CRYSTAL, 225) == 226 and latent.label_for(CRYSTAL) == 1
    z, mask = latent.sample_latents(torch.tensor([2, 5]), kind=CRYSTAL, steps=2, spacegroup=221, guidance=2.0,
                                    generator=torch.Generator().manual_seed(0))
    assert z.shape == (2, 5, 4) and torch.isfinite(z).all()
    plain = ADiTLatentModule(ae.config, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4)
    assert plain.dit.y_embed.null_class == 2  # off by default: the molecule-only label layout
    with pytest.raises(ValueError, match="without space groups"):
        plain.label_for(CRYSTAL, 225)


def test_molecule_only_element_conditioning_leaves_crystals_generating_their_elements(qm9_root, crystal_csvs,
                                                                                     tmp_path):
    latent, trainer, dm, ae = fit_tiny_joint_latent(qm9_root, crystal_csvs, tmp_path,
                                                 element_conditioning="molecules")
    # tokens of molecules carry their elements, tokens of crystals (and padding) label 0
    atoms = Atoms.from_pyg(next(iter(dm.train_dataloader())))
    labels = latent.token_kwargs(atoms)["token_labels"]  # (B, N)
    mol = atoms.dataset_idx == MOLECULE
    assert mol.any() and (~mol).any()
    assert torch.equal(labels[mol], atoms.atom_types[mol].long()) and (labels[~mol] == 0).all()
    # only molecules' formulas are stored: 32 molecules, no crystal
    assert latent.composition_weight[MOLECULE].sum() == 32 and latent.composition_weight[CRYSTAL].sum() == 0
    assert (latent.composition_weight.sum(0) > 0).all()  # no formula of a crystal only
    mols = MoleculeGenerator.from_lightning(latent, {"steps": 2})
    xtals = CrystalGenerator.from_lightning(latent, {"steps": 2})
    assert mols.element_conditioned and not xtals.element_conditioned
    formulas = {tuple(r) for r in latent.compositions.tolist()}
    for types, _ in mols.sample_arrays(4, seed=0):  # each molecule has the size of a stored formula
        assert len(types) in {sum(f) for f in formulas}
    sizes = set(torch.nonzero(latent.atom_count_hist[CRYSTAL]).flatten().tolist())
    assert {len(c[0]) for c in xtals.sample_arrays(4, seed=0)} <= sizes  # crystals draw an atom count
    assert torch.equal(xtals._token_types(torch.tensor([3, 5])), torch.zeros(2, 5, dtype=torch.long))  # label 0
    # the conditioned kinds travel with the weights: checkpoint and pretrained folder
    trainer.save_checkpoint(tmp_path / "mol_elements.ckpt")
    reloaded = load_latent_checkpoint(tmp_path / "mol_elements.ckpt")
    assert reloaded.element_kinds == (MOLECULE,) and reloaded.hparams.element_conditioning == "molecules"
    xtals.save_pretrained(tmp_path / "joint_gen")
    assert json.loads((tmp_path / "joint_gen" / "config.json").read_text())["element_kinds"] == [MOLECULE]
    again = CrystalGenerator.from_pretrained(tmp_path / "joint_gen")
    assert again.element_kinds == (MOLECULE,) and not again.element_conditioned
    assert MoleculeGenerator.from_pretrained(tmp_path / "joint_gen").element_conditioned
    # a model given crystals' elements too cannot sample crystals without their compositions
    with pytest.raises(ValueError, match="elements of crystals given, but no crystal composition is stored"):
        CrystalGenerator(xtals.autoencoder, xtals.dit, xtals.flow, xtals.latent_mean, xtals.latent_std,
                         xtals.atom_count_hist, compositions=xtals.compositions,
                         composition_weight=xtals.composition_weight, element_kinds=(MOLECULE, CRYSTAL))
    with pytest.raises(ValueError, match="element_conditioning must be true, false, 'molecules' or 'crystals'"):
        ADiTLatentModule(ae.config, preset="DiT-Mini", depth=1, element_conditioning="atoms")
