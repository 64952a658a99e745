"""ADiT on real QM9 molecules, end to end at toy size: autoencoder, latent DiT,
export, generator API and the sample/evaluate commands."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from rdkit import Chem
from torch_geometric.loader import DataLoader

from dit3d.api import MoleculeGenerator
from dit3d.data import QM9, QM9DataModule
from dit3d.models import ADiTAutoencoderModule, ADiTLatentModule
from dit3d.models.adit_autoencoder import min_image
from dit3d.models.adit_latent import load_latent_checkpoint
from dit3d.pretrained import PretrainedError
from dit3d.testing import randomize_
from dit3d.tokenizers import AtomAutoencoder, Atoms


def tiny_trainer(root, steps: int) -> Trainer:
    return Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=root, limit_val_batches=0,
                   callbacks=[])


@pytest.fixture(scope="module")
def trained(qm9_root, tmp_path_factory):
    """A toy autoencoder and latent DiT trained for a few steps on 256 molecules."""
    tmp = tmp_path_factory.mktemp("adit")
    torch.manual_seed(0)
    data = QM9DataModule(batch_size=32, train_subset=256, val_subset=64)
    ae = ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, lr=3e-3, warmup_steps=1)
    trainer = tiny_trainer(tmp, 16)
    trainer.fit(ae, datamodule=data)
    ae_ckpt = tmp / "ae.ckpt"
    trainer.save_checkpoint(ae_ckpt)
    latent = ADiTLatentModule(str(ae_ckpt), preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4,
                              warmup_steps=1, stats_batches=2, max_atoms=32)
    trainer = tiny_trainer(tmp, 4)
    trainer.fit(latent, datamodule=data)
    latent_ckpt = tmp / "latent.ckpt"
    trainer.save_checkpoint(latent_ckpt)
    gen_dir = tmp / "generator"
    MoleculeGenerator.from_lightning(latent, {"steps": 4}).save_pretrained(gen_dir)
    return {"ae": ae, "latent": latent, "latent_ckpt": latent_ckpt, "gen_dir": gen_dir, "tmp": tmp}


def test_min_image_is_periodic():
    d = torch.tensor([0.98, -0.98, 0.4, -0.6])
    assert torch.allclose(min_image(d), torch.tensor([-0.02, 0.02, 0.4, 0.4]), atol=1e-6)


def test_autoencoder_learns_to_reconstruct_real_molecules(qm9_root):
    torch.manual_seed(0)
    batch = next(iter(DataLoader(QM9(split="train", subset=32), batch_size=32)))
    module = ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, lr=3e-3, warmup_steps=1)
    opt = module.configure_optimizers()["optimizer"]
    first = None
    for _ in range(40):
        loss = module.training_step(batch, 0)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_latent_noise_perturbs_only_what_the_decoder_sees():
    """The encoder's outputs are untouched; the decoder's input moves by latent_noise * spread."""
    torch.manual_seed(0)
    atoms = Atoms(torch.tensor([[8, 1, 1], [6, 8, 0]]), torch.randn(2, 3, 3), torch.zeros(2, 3, 3),
                  torch.tensor([[True] * 3, [True, True, False]]), torch.zeros(2, 6), torch.tensor([0, 0]))
    module = randomize_(ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, latent_noise=0.5))
    clean, mean, logvar = module(atoms, sample=False)
    noisy, mean2, logvar2 = module(atoms, sample=False, latent_noise=0.5)
    assert torch.equal(mean, mean2) and torch.equal(logvar, logvar2)
    assert not torch.allclose(noisy["pos"], clean["pos"])
    assert torch.equal(module(atoms, sample=False)[0]["pos"], clean["pos"])  # no noise unless asked
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="latent_noise must be >= 0"):
            ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_noise=bad)


def test_latent_statistics_and_histogram(trained):
    latent = trained["latent"]
    assert bool(latent.stats_ready)
    assert latent.atom_count_hist[0].sum() == 256 and latent.atom_count_hist[1].sum() == 0
    assert latent.atom_count_hist[0, :3].sum() == 0  # no QM9 molecule among the first 256 has < 3 atoms
    assert torch.all(latent.latent_std > 0) and not torch.allclose(latent.latent_std, torch.ones(4))


def test_checkpoint_rebuilds_without_stage1_file(trained):
    (trained["tmp"] / "ae.ckpt").rename(trained["tmp"] / "ae_moved.ckpt")
    module = load_latent_checkpoint(trained["latent_ckpt"])
    (trained["tmp"] / "ae_moved.ckpt").rename(trained["tmp"] / "ae.ckpt")
    counts = torch.tensor([5, 9])
    a = module.sample_latents(counts, steps=3, generator=torch.Generator().manual_seed(0))[0]
    b = trained["latent"].sample_latents(counts, steps=3, generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError):
        load_latent_checkpoint(trained["tmp"] / "nope.ckpt")


def test_generator_round_trip_and_seeds(trained, capsys):
    gen = MoleculeGenerator.from_pretrained(trained["gen_dir"])
    a = gen.sample_arrays(6, seed=3)
    b = gen.sample_arrays(6, seed=3)
    c = gen.sample_arrays(6, seed=4)
    assert all((za == zb).all() and (pa == pb).all() for (za, pa), (zb, pb) in zip(a, b))
    assert any(len(za) != len(zc) or not (pa == pc).all() for (za, pa), (zc, pc) in zip(a, c))
    hist = gen.atom_count_hist[0]  # molecules' row of the per-kind histograms
    assert all(hist[len(z)] > 0 for z, _ in a)  # sizes come from the training histogram
    assert all(1 <= z.min() and z.max() <= 100 for z, _ in a)  # never the mask token
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    gen.sample_arrays(2)  # no seed: fresh draws, but the user's global RNG is left alone
    assert torch.equal(torch.rand(3), expected)
    capsys.readouterr()
    quiet = gen.sample_arrays(6, seed=3, batch_size=4)
    assert capsys.readouterr().err == ""
    shown = gen.sample_arrays(6, seed=3, progress=True, batch_size=4)  # a bar counting molecules, same samples
    assert all((zq == zs).all() and (pq == ps).all() for (zq, pq), (zs, ps) in zip(quiet, shown))
    assert "sampling molecules:" in capsys.readouterr().err
    mols = gen.sample(3, seed=0)
    assert len(mols) == 3 and all(isinstance(m, Chem.Mol) and m.GetNumConformers() == 1 for m in mols)
    with pytest.raises(ValueError, match="positive"):
        gen.sample_arrays(0)
    with pytest.raises(ValueError, match="unknown sampling options"):
        gen.sample_arrays(2, eta=1.0)


def test_generator_rejects_other_kinds(trained, tmp_path):
    trained["latent"].autoencoder.save_pretrained(tmp_path / "ae")
    with pytest.raises(PretrainedError, match="expected one of 'adit-molecules', 'adit-joint'"):
        MoleculeGenerator.from_pretrained(tmp_path / "ae")
    with pytest.raises(PretrainedError, match="neither"):
        MoleculeGenerator.from_pretrained(tmp_path / "missing")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dit3d.cli", *args], capture_output=True, text=True, timeout=300)


def test_sample_and_evaluate_commands(trained, tmp_path):
    sdf, xyz = tmp_path / "out.sdf", tmp_path / "out.xyz"
    for out in (sdf, xyz):
        proc = run_cli("sample", "molecules", "--checkpoint", str(trained["gen_dir"]), "-n", "5", "-o", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert len([m for m in Chem.SDMolSupplier(str(sdf), removeHs=False, sanitize=False)]) == 5
    proc = run_cli("evaluate", "molecules", str(xyz), "--protocol", "adit", "--train-smiles", "none",
                   "--out", str(tmp_path / "res.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("atom_stability", "mol_stability", "validity", "uniqueness", "novelty", "protocol"):
        assert key in result
    assert result["counts"]["molecules"] == 5 and result["protocol"]["name"] == "adit"
    assert json.loads((tmp_path / "res.json").read_text()) == result
    assert (tmp_path / "res_grid.png").read_bytes()[:4] == b"\x89PNG"
    bad = run_cli("sample", "molecules", "--checkpoint", str(trained["gen_dir"]), "-n", "2", "-o", str(tmp_path / "x.txt"))
    assert bad.returncode != 0 and "must end in .sdf or .xyz" in bad.stderr
    assert not (tmp_path / "x.txt").exists()
    missing = run_cli("evaluate", "molecules", str(tmp_path / "missing.sdf"))
    assert missing.returncode != 0 and "missing.sdf" in missing.stderr


def test_ema_update_and_sampling_network(trained):
    latent = trained["latent"]
    assert latent.sampling_dit is latent.ema_dit
    module = ADiTLatentModule(latent.autoencoder.config, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4,
                              ema_decay=0.9)
    before = [p.clone() for p in module.ema_dit.parameters()]
    with torch.no_grad():
        for p in module.dit.parameters():
            p.add_(1.0)
    module.update_ema(step=0)  # warm-up: decay min(0.9, 1/10) = 0.1
    for old, new, raw in zip(before, module.ema_dit.parameters(), module.dit.parameters()):
        assert torch.allclose(new, 0.1 * old + 0.9 * raw, atol=1e-6)
    before = [p.clone() for p in module.ema_dit.parameters()]
    module.update_ema(step=1000)  # past warm-up: decay 0.9
    for old, new, raw in zip(before, module.ema_dit.parameters(), module.dit.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * raw, atol=1e-6)
    no_ema = ADiTLatentModule(latent.autoencoder.config, preset="DiT-Mini", depth=1, hidden_size=48,
                              num_heads=4, ema_decay=0.0)
    assert no_ema.sampling_dit is no_ema.dit


def test_int8_generator_samples_the_same_sizes_and_refuses_to_save(trained, tmp_path):
    from dit3d.chem.io import read_xyz

    gen = MoleculeGenerator.from_pretrained(trained["gen_dir"])
    full = gen.sample_arrays(4, seed=2)
    assert gen.quantize_int8() is gen
    assert type(gen.dit.trunk.blocks[0].attn.qkv).__name__ == "Int8Linear"
    assert type(gen.autoencoder.decoder.blocks[0].attn.qkv).__name__ == "Linear"  # the autoencoder stays float
    int8 = gen.sample_arrays(4, seed=2)
    assert [len(z) for z, _ in int8] == [len(z) for z, _ in full]  # atom counts are drawn before the flow
    assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(int8, full))  # the int8 layers did run
    assert all(np.isfinite(p).all() for _, p in int8)
    with pytest.raises(ValueError, match="int8"):
        gen.save_pretrained(tmp_path / "q")
    assert not (tmp_path / "q").exists()
    out = tmp_path / "q.xyz"
    proc = run_cli("sample", "molecules", "--checkpoint", str(trained["gen_dir"]), "-n", "4", "--seed", "2",
                   "--int8", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r.atomic_numbers.tolist() for r in read_xyz(out)] == [z.tolist() for z, _ in int8]


def test_temperature_option_default_export_and_cli(trained, tmp_path):
    from dit3d.chem.io import read_xyz

    gen = MoleculeGenerator.from_pretrained(trained["gen_dir"])
    assert gen.sampling["temperature"] == 1.0  # folders without the key sample as before
    plain, cold = gen.sample_arrays(3, seed=1), gen.sample_arrays(3, seed=1, temperature=0.5)
    assert [len(z) for z, _ in plain] == [len(z) for z, _ in cold]
    assert any(not np.allclose(p, c) for (_, p), (_, c) in zip(plain, cold))
    for bad in (0, -0.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
            gen.sample_arrays(2, temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        MoleculeGenerator.from_lightning(trained["latent"], {"temperature": 0.0})
    with pytest.raises(ValueError, match="solver"):
        MoleculeGenerator.from_lightning(trained["latent"], {"solver": "rk4"})
    with pytest.raises(ValueError, match="guidance"):
        MoleculeGenerator.from_lightning(trained["latent"], {"guidance": -1.0})
    numpy_tau = gen.sample_arrays(3, seed=1, temperature=np.float32(0.5))  # any real number is accepted
    assert all(np.allclose(a, b) for (_, a), (_, b) in zip(numpy_tau, cold))
    bad_dir = tmp_path / "bad"
    shutil.copytree(trained["gen_dir"], bad_dir)
    config = json.loads((bad_dir / "config.json").read_text())
    config["sampling"]["temperature"] = -1
    (bad_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match="temperature must be a finite float > 0"):
        MoleculeGenerator.from_pretrained(bad_dir)
    proc = run_cli("export", "molecules", str(trained["latent_ckpt"]), "-o", str(tmp_path / "g"), "--steps", "4",
                   "--temperature", "0.5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = MoleculeGenerator.from_pretrained(tmp_path / "g")
    assert exported.sampling["temperature"] == 0.5
    out = tmp_path / "cold.xyz"
    proc = run_cli("sample", "molecules", "--checkpoint", str(trained["gen_dir"]), "-n", "3", "--seed", "1",
                   "--temperature", "0.5", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [np.allclose(r.positions, p, atol=1e-4) for r, (_, p) in zip(read_xyz(out), cold)] == [True] * 3


def test_element_conditioned_latent_dit_trains_samples_and_reloads(trained, qm9_root):
    tmp = trained["tmp"]
    torch.manual_seed(0)
    data = QM9DataModule(batch_size=32, train_subset=256, val_subset=64)
    module = ADiTLatentModule(trained["ae"].autoencoder.config, preset="DiT-Mini", depth=1, hidden_size=48,
                              num_heads=4, warmup_steps=1, stats_batches=2, max_atoms=32, element_conditioning=True)
    module.autoencoder.load_state_dict(trained["ae"].autoencoder.state_dict())
    assert module.dit.token_embed.num_embeddings == module.autoencoder.max_z + 1
    trainer = tiny_trainer(tmp, 3)
    trainer.fit(module, datamodule=data)
    ckpt = tmp / "elements.ckpt"
    trainer.save_checkpoint(ckpt)
    reloaded = load_latent_checkpoint(ckpt)
    assert reloaded.hparams.element_conditioning and reloaded.dit.token_embed is not None
    # the training compositions are kept, sized by the data, and reload with the weights
    train = [data.train_dataset[i] for i in range(len(data.train_dataset))]
    formulas = {tuple(torch.bincount(d.atom_types.long(), minlength=101).tolist()) for d in train}
    assert {tuple(r) for r in reloaded.compositions.tolist()} == formulas
    assert reloaded.composition_weight[0].sum() == len(train) and reloaded.composition_weight[1].sum() == 0
    assert torch.equal(reloaded.compositions, module.compositions)
    types = torch.tensor([[6, 8, 1, 1], [6, 1, 1, 0]])
    args = dict(steps=2, generator=torch.Generator().manual_seed(0))
    z, mask = reloaded.sample_latents(torch.tensor([4, 3]), atom_types=types, **args)
    assert z.shape == (2, 4, 4) and mask.tolist() == [[True] * 4, [True] * 3 + [False]]
    z_other, _ = reloaded.sample_latents(torch.tensor([4, 3]), atom_types=torch.tensor([[7, 8, 1, 1], [6, 1, 1, 0]]),
                                         **dict(args, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(z_other[0], z[0])  # the given elements steer the flow
    with pytest.raises(ValueError, match="pass token_labels"):
        reloaded.sample_latents(torch.tensor([4, 3]), **args)
    with pytest.raises(ValueError, match=r"atom_types must be \(2, 4\)"):
        reloaded.sample_latents(torch.tensor([4, 3]), atom_types=types[:, :3], **args)

    with pytest.raises(ValueError, match="gives the elements of crystals, but the training data holds none"):
        ADiTLatentModule(trained["ae"].autoencoder.config, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4,
                         element_conditioning="crystals").measure_compositions(data.train_dataset)

    gen = MoleculeGenerator.from_lightning(reloaded, {"steps": 2})
    assert gen.element_kinds == (0, 1) and gen.element_conditioned
    gen.save_pretrained(tmp / "elements_gen")
    gen = MoleculeGenerator.from_pretrained(tmp / "elements_gen")
    assert torch.equal(gen.compositions, reloaded.compositions)
    arrays = gen.sample_arrays(6, seed=0)
    assert [len(a[0]) for a in arrays] == [len(a[0]) for a in gen.sample_arrays(6, seed=0)]
    sizes = set(reloaded.compositions.sum(-1).tolist())
    assert all(len(a[0]) in sizes for a in arrays)  # each sample has the size of a training composition


def test_generator_needs_compositions_exactly_for_an_element_conditioned_dit(trained):
    latent = trained["latent"]
    ae = latent.autoencoder
    plain = MoleculeGenerator.from_lightning(latent)
    args = plain_args = (ae, plain.dit, plain.flow, plain.latent_mean, plain.latent_std, plain.atom_count_hist)
    table, weight = torch.zeros(1, 101, dtype=torch.long), torch.ones(2, 1)
    with pytest.raises(ValueError, match="without element conditioning"):
        MoleculeGenerator(*args, compositions=table, composition_weight=weight)
    from dit3d.nn import DiT
    dit = DiT(ae.latent_dim, time_scale=1000.0, preset="DiT-Mini", depth=1, num_classes=2, self_condition=True,
              token_classes=ae.max_z + 1)
    args = (ae, dit) + args[2:]
    with pytest.raises(ValueError, match="give the training compositions"):
        MoleculeGenerator(*args)
    with pytest.raises(ValueError, match=r"compositions must be \(F, 101\)"):
        MoleculeGenerator(*args, compositions=table[:, :50], composition_weight=weight)
    with pytest.raises(ValueError, match="no training composition is stored.*measure_compositions"):
        MoleculeGenerator(*args, compositions=table, composition_weight=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="element_kinds must be system kinds"):
        MoleculeGenerator(*args, compositions=table, composition_weight=weight, element_kinds=(2,))
    with pytest.raises(ValueError, match="element_kinds .* without element conditioning"):
        MoleculeGenerator(*plain_args, element_kinds=(0,))
    # a folder without element_kinds (written before they were saved) with compositions of crystals
    # only: molecules were not element-conditioned and draw an atom count
    unconditioned = MoleculeGenerator(*args, compositions=table, composition_weight=torch.tensor([[0.0], [1.0]]),
                                      sampling={"steps": 2})
    assert not unconditioned.element_conditioned
    sizes = set(torch.nonzero(plain.atom_count_hist[0]).flatten().tolist())
    assert {len(types) for types, _ in unconditioned.sample_arrays(4, seed=0)} <= sizes


def fit_two_steps(trained, ckpt, **options) -> tuple[ADiTLatentModule, QM9DataModule]:
    """A toy latent DiT on the fixture's autoencoder with ``options``, fitted two steps and
    saved to ``ckpt``; the module and its data."""
    torch.manual_seed(0)
    data = QM9DataModule(batch_size=32, train_subset=256, val_subset=64)
    module = ADiTLatentModule(trained["ae"].autoencoder.config, preset="DiT-Mini", depth=1, hidden_size=48,
                              num_heads=4, warmup_steps=1, stats_batches=2, max_atoms=32, **options)
    module.autoencoder.load_state_dict(trained["ae"].autoencoder.state_dict())
    trainer = tiny_trainer(trained["tmp"], 2)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(ckpt)
    return module, data


def test_permutation_coupling_option_trains_and_reloads(trained):
    """``coupling="permutation"`` reaches the flow, trains, and survives a checkpoint; on one
    batch it pairs every molecule's atoms with closer noise than the independent draw."""
    tmp = trained["tmp"]
    module, data = fit_two_steps(trained, tmp / "coupled.ckpt", coupling="permutation")
    assert module.flow.coupling == "permutation"
    assert load_latent_checkpoint(tmp / "coupled.ckpt").flow.coupling == "permutation"
    assert trained["latent"].flow.coupling == "independent"  # ADiT's default
    atoms = Atoms.from_pyg(next(iter(DataLoader(data.train_dataset[:32], batch_size=32))))
    z = module.encode(atoms)
    seen = []

    def spy(x_t, t, mask=None, **kwargs):
        seen.append(x_t)
        return torch.zeros_like(x_t)

    t = torch.zeros(32)  # x_t is the noise itself
    for flow in (module.flow, trained["latent"].flow):
        flow.self_condition_prob, prob = 0.0, flow.self_condition_prob
        flow.training_loss(spy, z, mask=atoms.mask, generator=torch.Generator().manual_seed(0), t=t)
        flow.self_condition_prob = prob
    coupled, independent = ((x - z).square().sum((1, 2)) for x in seen)
    assert bool((coupled <= independent + 1e-5).all()) and float(coupled.sum()) < 0.8 * float(independent.sum())


def test_principal_frame_trains_on_canonical_poses_and_reloads(trained):
    """``frame="principal"``: the encoder sees each molecule in its principal-axes pose,
    whatever rotation the data came in; the setting survives a checkpoint; unknown frames
    are refused."""
    tmp = trained["tmp"]
    module, data = fit_two_steps(trained, tmp / "principal.ckpt", frame="principal")
    assert load_latent_checkpoint(tmp / "principal.ckpt").hparams.frame == "principal"
    atoms = Atoms.from_pyg(next(iter(DataLoader(data.train_dataset[:32], batch_size=32))))
    turned = module.pose(atoms)
    again = module.pose(trained["latent"].pose(atoms, torch.Generator().manual_seed(1)))  # rotated at random first
    defined = torch.tensor([float(((again.pos - turned.pos)[b].norm(dim=-1)).max()) < 1e-4 for b in range(32)])
    assert float(defined.float().mean()) > 0.9  # all but symmetric tops
    var = turned.pos.square().sum(1)  # (B, 3)
    assert bool((var[:, 0] >= var[:, 1] - 1e-4).all() and (var[:, 1] >= var[:, 2] - 1e-4).all())
    with pytest.raises(ValueError, match="frame must be one of"):
        ADiTLatentModule(trained["ae"].autoencoder.config, preset="DiT-Mini", depth=1, frame="canonical")
    # the generator keeps the frame with the weights; a plain folder's config does not name one
    gen = MoleculeGenerator.from_lightning(module, {"steps": 2})
    gen.save_pretrained(tmp / "principal_gen")
    assert json.loads((tmp / "principal_gen" / "config.json").read_text())["frame"] == "principal"
    assert MoleculeGenerator.from_pretrained(tmp / "principal_gen").frame == "principal"
    assert "frame" not in json.loads((trained["gen_dir"] / "config.json").read_text())
    assert MoleculeGenerator.from_pretrained(trained["gen_dir"]).frame == "random"
    with pytest.raises(ValueError, match="'random' frame, this model in the 'principal'"):
        gen.set_guide(MoleculeGenerator.from_lightning(trained["latent"]))
    # training encodes exactly those poses
    seen = []
    encode = module.autoencoder.encode
    module.autoencoder.encode = lambda batch: seen.append(batch.pos) or encode(batch)
    module.log = lambda *args, **kwargs: None  # outside a trainer loop
    try:
        module.training_step(next(iter(DataLoader(data.train_dataset[:32], batch_size=32))), 0)
    finally:
        module.autoencoder.encode = encode
        del module.log
    assert torch.allclose(seen[0], turned.pos)
    # a warm start or a resume may not change the frame: the latents' statistics describe the other poses
    warm = ADiTLatentModule(str(tmp / "ae.ckpt"), preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4,
                            max_atoms=32, init_from=str(tmp / "principal.ckpt"))  # the same encoder, the random frame
    with pytest.raises(ValueError, match="'principal' frame, this module in the 'random' one"):
        warm.load_init_weights()
    with pytest.raises(ValueError, match="resume with frame: principal"):
        trained["latent"].on_load_checkpoint(torch.load(tmp / "principal.ckpt", weights_only=False))


def test_warm_start_copies_the_source_and_adds_a_zero_element_table(trained):
    """``init_from`` continues a plain latent DiT as an element-conditioned one: at step 0 it
    computes exactly what the source did, whatever elements it is given; training then
    measures the compositions and moves the table; its own checkpoints reload without the
    source file."""
    tmp, source = trained["tmp"], trained["latent"]
    ae = trained["ae"].autoencoder
    kwargs = dict(preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, warmup_steps=1, stats_batches=2,
                  max_atoms=32)
    module = ADiTLatentModule(str(trained["tmp"] / "ae.ckpt"), element_conditioning=True,
                              init_from=str(trained["latent_ckpt"]), **kwargs)
    module.load_init_weights()
    for name in ("latent_mean", "latent_std", "atom_count_hist"):
        assert torch.equal(getattr(module, name), getattr(source, name))
    assert bool(module.stats_ready) and module.compositions.numel() == 0
    x, t = torch.randn(2, 5, ae.latent_dim), torch.tensor([0.3, 0.8])
    y, mask = torch.tensor([0, 0]), torch.ones(2, 5, dtype=torch.bool)
    for mine, theirs in ((module.dit, source.dit), (module.ema_dit, source.ema_dit)):
        assert not torch.equal(source.dit.state_dict()["trunk.blocks.0.attn.qkv.weight"],
                               source.ema_dit.state_dict()["trunk.blocks.0.attn.qkv.weight"])  # raw and EMA differ
        expected = theirs(x, t, y=y, mask=mask)
        for labels in (torch.zeros(2, 5, dtype=torch.long), torch.tensor([[6, 8, 1, 1, 7]] * 2)):
            assert torch.equal(mine(x, t, y=y, mask=mask, token_labels=labels), expected)

    torch.manual_seed(0)
    data = QM9DataModule(batch_size=32, train_subset=256, val_subset=64)
    trainer = tiny_trainer(tmp, 2)
    trainer.fit(module, datamodule=data)
    assert module.compositions.numel() > 0 and module.composition_weight[0].sum() == len(data.train_dataset)
    assert module.dit.token_embed.weight.abs().sum() > 0  # the elements now matter
    assert torch.equal(module.latent_std, source.latent_std)  # the latents are standardised as the DiT learnt them
    moved = tmp / "warm_start_source.ckpt"
    shutil.copy(trained["latent_ckpt"], moved)
    restarted = ADiTLatentModule(str(trained["tmp"] / "ae.ckpt"), element_conditioning=True, init_from=str(moved),
                                 **kwargs)
    trainer = tiny_trainer(tmp, 2)
    trainer.fit(restarted, datamodule=data)
    trainer.save_checkpoint(tmp / "warm.ckpt")
    moved.unlink()
    reloaded = load_latent_checkpoint(tmp / "warm.ckpt")
    assert torch.equal(reloaded.compositions, restarted.compositions)
    # resuming rebuilds the module from the checkpoint's hyper-parameters (autoencoder as a config dict,
    # as LightningCLI does with --ckpt_path): the source file is not needed and the trained weights win
    resumed = ADiTLatentModule(**dict(reloaded.hparams, autoencoder=dict(reloaded.hparams["autoencoder"])))
    tiny_trainer(tmp, 3).fit(resumed, datamodule=data, ckpt_path=tmp / "warm.ckpt")
    assert resumed.global_step == 3 and torch.equal(resumed.latent_std, source.latent_std)

    folder = ADiTLatentModule(str(trained["tmp"] / "ae.ckpt"), init_from=str(trained["gen_dir"]), **kwargs)
    folder.load_init_weights()  # a generator folder holds the EMA network: it starts both
    exported = MoleculeGenerator.from_pretrained(trained["gen_dir"]).dit.state_dict()
    for net in (folder.dit, folder.ema_dit):
        assert all(torch.equal(v, exported[k]) for k, v in net.state_dict().items())


def test_warm_start_refuses_another_encoder_or_architecture(trained, tmp_path):
    ae_ckpt, ckpt = str(trained["tmp"] / "ae.ckpt"), str(trained["latent_ckpt"])
    kwargs = dict(preset="DiT-Mini", hidden_size=48, num_heads=4, max_atoms=32, init_from=ckpt)
    other_encoder = ADiTLatentModule(trained["ae"].autoencoder.config, depth=1, **kwargs)  # untrained autoencoder
    with pytest.raises(ValueError, match="another encoder"):
        other_encoder.load_init_weights()
    with pytest.raises(ValueError, match="preset, depth, width"):
        ADiTLatentModule(ae_ckpt, depth=2, **kwargs).load_init_weights()
    with pytest.raises(ValueError, match="set max_atoms"):
        ADiTLatentModule(ae_ckpt, depth=1, **dict(kwargs, max_atoms=40)).load_init_weights()
    with pytest.raises(FileNotFoundError, match="no such checkpoint file or pretrained folder"):
        ADiTLatentModule(ae_ckpt, depth=1, **dict(kwargs, init_from=str(tmp_path / "none.ckpt"))).load_init_weights()
    with pytest.raises(ValueError, match="not a latent-DiT checkpoint"):
        ADiTLatentModule(ae_ckpt, depth=1, **dict(kwargs, init_from=ae_ckpt)).load_init_weights()


def test_lr_decay_steps_anneals_the_latent_dit_to_zero():
    ae = AtomAutoencoder(hidden_size=32, depth=1, num_heads=4, latent_dim=4).config
    kwargs = dict(preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, max_atoms=32, warmup_steps=2)
    module = ADiTLatentModule(ae, lr_decay_steps=6, **kwargs)
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert [f(s) for s in (0, 1, 4, 6, 9) for f in schedule.lr_lambdas] == pytest.approx([0.5, 1.0, 0.5, 0.0, 0.0])
    constant = ADiTLatentModule(ae, **kwargs).configure_optimizers()
    assert constant["lr_scheduler"]["scheduler"].lr_lambdas[0](10 ** 6) == 1.0  # the default keeps the rate
    with pytest.raises(ValueError, match="lr_decay_steps"):
        ADiTLatentModule(ae, **dict(kwargs, lr_decay_steps=2))
