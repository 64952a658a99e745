"""Fine-tuning an ADiT decoder with the encoder frozen (ADiTAutoencoderModule(init_from=...,
freeze_encoder=True)) and exporting a latent DiT with it (replace_autoencoder, `dit3d export
... --autoencoder`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from lightning.pytorch import Trainer

from dit3d.api import CrystalGenerator, MoleculeGenerator
from dit3d.data import QM9DataModule
from dit3d.models import ADiTAutoencoderModule, ADiTLatentModule
from dit3d.models.adit_latent import load_autoencoder
from dit3d.pretrained import PretrainedError

SIZES = dict(hidden_size=32, depth=1, num_heads=4, latent_dim=4)


def fit(module, data, root, steps: int) -> Trainer:
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root, limit_val_batches=0, callbacks=[])
    trainer.fit(module, datamodule=data)
    return trainer


@pytest.fixture(scope="module")
def stages(qm9_root, tmp_path_factory):
    """A toy autoencoder, a latent DiT on its latents, and a decoder fine-tuned from it (encoder frozen)."""
    tmp = tmp_path_factory.mktemp("decoder_ft")
    torch.manual_seed(0)
    data = QM9DataModule(batch_size=32, train_subset=128, val_subset=32)
    ae = ADiTAutoencoderModule(**SIZES, lr=3e-3, warmup_steps=1)
    fit(ae, data, tmp, 8).save_checkpoint(tmp / "ae.ckpt")
    latent = ADiTLatentModule(str(tmp / "ae.ckpt"), preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4,
                              warmup_steps=1, stats_batches=2, max_atoms=32)
    fit(latent, data, tmp, 2).save_checkpoint(tmp / "latent.ckpt")
    ft = ADiTAutoencoderModule(**SIZES, lr=3e-3, warmup_steps=1, init_from=str(tmp / "ae.ckpt"),
                               freeze_encoder=True, latent_noise=0.2)
    fit(ft, data, tmp, 6).save_checkpoint(tmp / "ft.ckpt")
    gen_dir = tmp / "generator"
    MoleculeGenerator.from_lightning(latent, {"steps": 3}).save_pretrained(gen_dir, weights_dtype="float16")
    return {"ae": ae, "ft": ft, "tmp": tmp, "gen_dir": gen_dir}


def test_freezing_the_encoder_trains_only_the_decoder(stages):
    before, after = stages["ae"].autoencoder.state_dict(), stages["ft"].autoencoder.state_dict()
    for name, value in after.items():
        if name.split(".")[0] in ("type_embed", "pos_embed", "frac_embed", "kind_embed", "encoder"):
            assert torch.equal(value, before[name]), name
    assert not torch.equal(after["decoder.blocks.0.mlp.fc1.weight"], before["decoder.blocks.0.mlp.fc1.weight"])
    assert stages["ft"].autoencoder.same_encoder(stages["ae"].autoencoder)
    trainable = {n.split(".")[1] for n, p in stages["ft"].named_parameters() if p.requires_grad}
    assert trainable == {"latent_in", "decoder", "lattice_head"}


def test_init_from_checks_its_source(stages):
    with pytest.raises(ValueError, match="freeze_encoder keeps a trained encoder fixed: give init_from"):
        ADiTAutoencoderModule(**SIZES, freeze_encoder=True)
    with pytest.raises(ValueError, match="set the same sizes"):
        ADiTAutoencoderModule(**{**SIZES, "hidden_size": 64}, init_from=str(stages["tmp"] / "ae.ckpt")).load_init_weights()
    # an ADiT generator folder (float16 weights) also serves as the source; its weights come in at fit
    from_folder = ADiTAutoencoderModule(**SIZES, init_from=str(stages["gen_dir"]), freeze_encoder=True)
    assert not from_folder.autoencoder.same_encoder(stages["ae"].autoencoder)
    from_folder.load_init_weights()
    assert from_folder.autoencoder.same_encoder(stages["ae"].autoencoder)
    optimised = {id(p) for group in from_folder.configure_optimizers()["optimizer"].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in from_folder.autoencoder.parameters() if p.requires_grad}
    assert not any(p.requires_grad for p in from_folder.autoencoder.encoder.parameters())
    assert not from_folder.autoencoder.same_encoder(stages["ae"].autoencoder, rtol=0.0)  # rounded to float16
    with pytest.raises(PretrainedError, match="not an ADiT autoencoder or generator folder"):
        load_autoencoder(str(_folder_of_kind(stages["tmp"] / "other", "dit3d-shapes")))
    # a stage-1 checkpoint whose weights do not fit its hyper-parameters: named, not a bare state_dict error
    ckpt = torch.load(stages["tmp"] / "ae.ckpt", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "decoder" not in k}
    torch.save(ckpt, stages["tmp"] / "cut.ckpt")
    with pytest.raises(ValueError, match=r"cut\.ckpt: weights do not match the config \(missing \['decoder"):
        load_autoencoder(str(stages["tmp"] / "cut.ckpt"))


def test_a_fine_tuned_checkpoint_loads_without_its_source(stages):
    source, moved = stages["tmp"] / "ae.ckpt", stages["tmp"] / "ae_moved.ckpt"
    source.rename(moved)
    try:
        again = ADiTAutoencoderModule.load_from_checkpoint(stages["tmp"] / "ft.ckpt")
    finally:
        moved.rename(source)
    tuned = stages["ft"].autoencoder.state_dict()
    assert all(torch.equal(v, tuned[k]) for k, v in again.autoencoder.state_dict().items())


def _folder_of_kind(path, kind: str):
    from dit3d.pretrained import save_pretrained

    return save_pretrained(path, kind, {}, {"w": torch.zeros(1)})


def test_replace_autoencoder_changes_only_the_decoding(stages):
    gen = MoleculeGenerator.from_pretrained(stages["gen_dir"])
    plain = gen.sample_arrays(4, seed=0)
    gen.replace_autoencoder(load_autoencoder(str(stages["tmp"] / "ft.ckpt")))
    tuned = gen.sample_arrays(4, seed=0)
    assert [len(z) for z, _ in plain] == [len(z) for z, _ in tuned]  # same counts and latents...
    assert any(not torch.allclose(torch.from_numpy(a), torch.from_numpy(b)) for (_, a), (_, b) in zip(plain, tuned))
    other = ADiTAutoencoderModule(**SIZES).autoencoder  # a fresh encoder: its latents mean nothing to this DiT
    with pytest.raises(ValueError, match="encoder differs from the one the latent DiT was trained on"):
        gen.replace_autoencoder(other)
    with pytest.raises(ValueError, match="guidance must be a finite float >= 0"):
        gen.set_sampling_defaults(guidance=-1.0)
    assert gen.set_sampling_defaults(steps=7).sampling["steps"] == 7


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dit3d.cli", *map(str, args)], capture_output=True, text=True)


def test_export_with_a_fine_tuned_decoder_from_a_checkpoint_or_a_folder(stages, tmp_path):
    ft_ckpt = stages["tmp"] / "ft.ckpt"
    proc = run_cli("export", "molecules", stages["tmp"] / "latent.ckpt", "-o", tmp_path / "a", "--steps", "3",
                   "--autoencoder", ft_ckpt)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("export", "crystals", stages["gen_dir"], "-o", tmp_path / "b", "--autoencoder", ft_ckpt,
                   "--note", "why=test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = MoleculeGenerator.from_pretrained(tmp_path / "a"), MoleculeGenerator.from_pretrained(tmp_path / "b")
    assert a.sampling["solver"] == "heun" and a.sampling["temperature"] == 1.0  # a .ckpt: the generator's defaults
    assert b.sampling == MoleculeGenerator.from_pretrained(stages["gen_dir"]).sampling  # a folder keeps its own
    b_config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert b_config["weights_dtype"] == "float16"  # ...and its weights dtype
    tuned = load_autoencoder(str(ft_ckpt)).state_dict()
    key = "decoder.blocks.0.mlp.fc1.weight"
    assert torch.equal(a.autoencoder.state_dict()[key], tuned[key])
    assert torch.equal(b.autoencoder.state_dict()[key], tuned[key].half().float())
    provenance = json.loads((tmp_path / "b" / "config.json").read_text())["provenance"]
    assert provenance["autoencoder"] == str(ft_ckpt) and provenance["why"] == "test"
    assert provenance["source_folder"] == str(stages["gen_dir"])
    with pytest.raises(PretrainedError, match="holds a 'adit-molecules' model"):
        CrystalGenerator.from_pretrained(tmp_path / "b")  # a molecule model re-exported stays one
    proc = run_cli("export", "molecules", stages["gen_dir"], "-o", tmp_path / "c", "--autoencoder",
                   stages["tmp"] / "nope.ckpt")
    assert proc.returncode != 0 and proc.stderr.startswith("dit3d export molecules: error:") \
        and "nope.ckpt" in proc.stderr
    assert not (tmp_path / "c").exists()
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_text("not a checkpoint")
    proc = run_cli("export", "molecules", stages["gen_dir"], "-o", tmp_path / "d", "--autoencoder", garbage)
    assert proc.returncode != 0 and proc.stderr.startswith("dit3d export molecules: error: --autoencoder")
    assert "cannot read it as a Lightning checkpoint" in proc.stderr and not (tmp_path / "d").exists()


def test_the_shipped_joint_folder_samples_both_kinds_with_its_fine_tuned_decoder_and_molecule_elements():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "data/adit_joint_cpu"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("no shipped joint model")
    config = json.loads((folder / "config.json").read_text())
    # since 2026-11-30 its molecules sample with autoguidance 4, crystals with the shared 2 (a re-export: records nest)
    assert config["kind_sampling"] == {"molecule": {"autoguidance": 4.0}}
    provenance = config["provenance"]["source_provenance"]
    # the annealed model re-exported with its pre-anneal self as autoguidance guide: its own record nests
    assert config["sampling"]["autoguidance"] == 2.0 and "guide" in config and "d31b07f" in provenance["guide_source"]
    provenance = provenance["source_provenance"]
    assert "joint_decoder_cpu.yaml" in provenance["command_decoder"]  # the decoder was fine-tuned
    assert "fine-tuned decoder" in provenance["autoencoder_from"]  # and the latent DiT trained on its folder
    assert "joint_ldm_long_cpu.yaml" in provenance["command_latent"]  # 150 min, then continued to 300
    assert "joint_ldm_300_cpu.yaml --ckpt_path runs/adit_joint_ldm_long_cpu" in provenance["command_latent"]
    assert "joint_ldm_elem_warm_cpu.yaml" in provenance["command_warm_start"]  # then molecules got their elements
    assert "joint_ldm_elem_anneal_cpu.yaml" in provenance["command_anneal"]  # then the learning rate decayed to 0
    assert CrystalGenerator.from_pretrained("adit-joint-cpu").sampling["autoguidance"] == 2.0
    assert MoleculeGenerator.from_pretrained("adit-joint-cpu").sampling["autoguidance"] == 4.0
    crystals = CrystalGenerator.from_pretrained("adit-joint-cpu").sample_set(3, seed=0, steps=4)
    assert crystals.num_records == 3 and all(s.volume > 0 for s in crystals.structures)
    gen = MoleculeGenerator.from_pretrained("adit-joint-cpu")
    assert gen.element_kinds == (0,)  # molecules draw a QM9 training formula, crystals their own elements
    assert gen.composition_weight[0].sum() == 100_000 and gen.composition_weight[1].sum() == 0  # QM9 train
    mols = gen.sample_arrays(2, seed=0, steps=4)
    assert all(len(z) == len(p) > 0 for z, p in mols)
