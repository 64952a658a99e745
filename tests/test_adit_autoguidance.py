"""Autoguidance for ADiT generators: a weaker latent DiT of the same latents stored with the
model (set_guide, `dit3d export --guide`), the `autoguidance` sampling option, and the checks
that refuse a guide of other latents."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from lightning.pytorch import Trainer
from safetensors.torch import load_file

from dit3d.api import MoleculeGenerator
from dit3d.data import QM9DataModule
from dit3d.models import ADiTAutoencoderModule, ADiTLatentModule
from dit3d.models.adit_sampling import sample_latents

SIZES = dict(hidden_size=32, depth=1, num_heads=4, latent_dim=4)
LATENT = dict(preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, warmup_steps=1, stats_batches=2, max_atoms=32)


def fit(module, data, root, steps: int) -> None:
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root, limit_val_batches=0, callbacks=[])
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(root / f"{module.__class__.__name__}_{steps}.ckpt")


@pytest.fixture(scope="module")
def runs(qm9_root, tmp_path_factory):
    """A toy autoencoder; latent DiTs on its latents after 2 (the guide) and 6 steps; and a
    latent DiT of another autoencoder."""
    tmp = tmp_path_factory.mktemp("autoguidance")
    data = QM9DataModule(batch_size=32, train_subset=128, val_subset=32)
    torch.manual_seed(0)
    fit(ADiTAutoencoderModule(**SIZES, lr=3e-3, warmup_steps=1), data, tmp, 4)
    ae = tmp / "ADiTAutoencoderModule_4.ckpt"
    for steps in (2, 6):
        torch.manual_seed(1)
        fit(ADiTLatentModule(str(ae), lr=3e-3, **LATENT), data, tmp, steps)
    other = tmp / "other"
    other.mkdir()
    torch.manual_seed(2)
    fit(ADiTAutoencoderModule(**SIZES, lr=3e-3, warmup_steps=1), data, other, 1)
    fit(ADiTLatentModule(str(other / "ADiTAutoencoderModule_1.ckpt"), **LATENT), data, other, 1)
    return {"tmp": tmp, "weak": tmp / "ADiTLatentModule_2.ckpt", "strong": tmp / "ADiTLatentModule_6.ckpt",
            "other": other / "ADiTLatentModule_1.ckpt"}


def generator(path) -> MoleculeGenerator:
    from dit3d.models.adit_latent import load_latent_checkpoint

    return MoleculeGenerator.from_lightning(load_latent_checkpoint(path), {"steps": 3})


def test_sampling_extrapolates_from_the_guide_with_the_same_inputs(runs):
    gen, weak = generator(runs["strong"]), generator(runs["weak"])
    gen.set_guide(weak)
    counts = torch.tensor([5, 7])
    kw = dict(kind=0, steps=3, solver="heun")
    z, mask = sample_latents(gen.dit, gen.flow, counts, gen.latent_mean, gen.latent_std, **kw,
                             generator=torch.Generator().manual_seed(0), guide=gen.guide, autoguidance_scale=2.5)
    y = torch.zeros(2, dtype=torch.long)
    combined = lambda x, t, **k: (weak.dit(x, t, y=y, **k)  # noqa: E731
                                  + 2.5 * (gen.dit(x, t, y=y, **k) - weak.dit(x, t, y=y, **k)))
    expected = gen.flow.sample(combined, (2, 7, gen.dit.in_dim), steps=3, solver="heun", mask=mask,
                               generator=torch.Generator().manual_seed(0), progress=False)
    torch.testing.assert_close(z, (expected * gen.latent_std + gen.latent_mean) * mask[..., None])
    # with classifier-free guidance towards the kind, both directions add to the conditional velocity
    z_both, _ = sample_latents(gen.dit, gen.flow, counts, gen.latent_mean, gen.latent_std, **kw, guidance=1.5,
                               generator=torch.Generator().manual_seed(0), guide=gen.guide, autoguidance_scale=2.5)
    null = torch.full_like(y, gen.dit.y_embed.null_class)
    both = lambda x, t, **k: (lambda c, u, w: c + 0.5 * (c - u) + 1.5 * (c - w))(  # noqa: E731
        gen.dit(x, t, y=y, **k), gen.dit(x, t, y=null, **k), weak.dit(x, t, y=y, **k))
    expected = gen.flow.sample(both, (2, 7, gen.dit.in_dim), steps=3, solver="heun", mask=mask,
                               generator=torch.Generator().manual_seed(0), progress=False)
    torch.testing.assert_close(z_both, (expected * gen.latent_std + gen.latent_mean) * mask[..., None])
    # scale 1 is the model alone: the same samples as without a guide
    plain = generator(runs["strong"]).sample_arrays(3, seed=0)
    same = gen.sample_arrays(3, seed=0, autoguidance=1.0)
    guided = gen.sample_arrays(3, seed=0, autoguidance=2.5)
    assert all((a == b).all() and (p == q).all() for (a, p), (b, q) in zip(plain, same))
    assert any(not torch.allclose(torch.from_numpy(p), torch.from_numpy(q)) for (_, p), (_, q) in zip(plain, guided))


def test_the_guide_is_saved_with_the_model(runs, tmp_path):
    gen = generator(runs["strong"]).set_guide(generator(runs["weak"])).set_sampling_defaults(autoguidance=2.0)
    gen.save_pretrained(tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert config["guide"] == gen.guide.config and config["sampling"]["autoguidance"] == 2.0
    again = MoleculeGenerator.from_pretrained(tmp_path / "g")
    assert all(torch.equal(v, again.guide.state_dict()[k]) for k, v in gen.guide.state_dict().items())
    for (a, p), (b, q) in zip(gen.sample_arrays(3, seed=1), again.sample_arrays(3, seed=1)):
        assert (a == b).all() and torch.allclose(torch.from_numpy(p), torch.from_numpy(q))


def test_bad_guides_and_options_are_refused(runs):
    gen = generator(runs["strong"])
    with pytest.raises(ValueError, match="autoguidance needs a guide network, and this model has none"):
        gen.sample_arrays(2, seed=0, autoguidance=2.0)
    with pytest.raises(ValueError, match="another autoencoder's latents"):
        gen.set_guide(generator(runs["other"]))
    wide = generator(runs["other"]).dit
    wide.config = {**wide.config, "in_dim": 8}
    with pytest.raises(ValueError, match="differ in in_dim 8 vs 4"):
        gen.set_guide(wide)
    gen.set_guide(generator(runs["weak"]))
    both = gen.sample_arrays(2, seed=0, autoguidance=2.0, guidance=1.5)  # the two add up (guidance_sum)
    for other in (gen.sample_arrays(2, seed=0, autoguidance=2.0), gen.sample_arrays(2, seed=0, guidance=1.5)):
        assert any(not torch.allclose(torch.from_numpy(p), torch.from_numpy(q)) for (_, p), (_, q) in zip(both, other))
    with pytest.raises(ValueError, match="autoguidance must be a finite float"):
        gen.set_sampling_defaults(autoguidance=float("nan"))
    gen.set_sampling_defaults(autoguidance=2.0)
    with pytest.raises(ValueError, match="set it to 1 first"):
        gen.set_guide(None)
    assert gen.set_sampling_defaults(autoguidance=1.0).set_guide(None).guide is None


def test_the_guide_runs_only_in_the_autoguidance_interval(runs, tmp_path):
    gen, weak = generator(runs["strong"]), generator(runs["weak"])
    gen.set_guide(weak)
    counts = torch.tensor([5, 7])
    kw = dict(kind=0, steps=3, solver="euler")  # flow times 0, 1/3, 2/3
    z, mask = sample_latents(gen.dit, gen.flow, counts, gen.latent_mean, gen.latent_std, **kw,
                             generator=torch.Generator().manual_seed(0), guide=gen.guide, autoguidance_scale=2.5,
                             autoguidance_interval=(0.5, 1.0))
    y = torch.zeros(2, dtype=torch.long)
    late = lambda x, t, **k: torch.where(  # noqa: E731
        t[:, None, None] >= 0.5, weak.dit(x, t, y=y, **k) + 2.5 * (gen.dit(x, t, y=y, **k) - weak.dit(x, t, y=y, **k)),
        gen.dit(x, t, y=y, **k))
    expected = gen.flow.sample(late, (2, 7, gen.dit.in_dim), steps=3, solver="euler", mask=mask,
                               generator=torch.Generator().manual_seed(0), progress=False)
    torch.testing.assert_close(z, (expected * gen.latent_std + gen.latent_mean) * mask[..., None])
    # the option: [0, 1] is guidance everywhere (older folders), an empty stretch of times the model alone
    everywhere = gen.sample_arrays(3, seed=0, autoguidance=2.5)
    assert all((a == b).all() and (p == q).all() for (a, p), (b, q) in
               zip(everywhere, gen.sample_arrays(3, seed=0, autoguidance=2.5, autoguidance_interval=[0, 1])))
    plain = gen.sample_arrays(3, seed=0, autoguidance=1.0)
    # Heun (the default) also evaluates at t = 1; this stretch holds none of its times
    nowhere = gen.sample_arrays(3, seed=0, autoguidance=2.5, autoguidance_interval=[0.99, 0.999])
    assert all((a == b).all() and (p == q).all() for (a, p), (b, q) in zip(plain, nowhere))
    gen.set_sampling_defaults(autoguidance=2.5, autoguidance_interval=(0.4, 1.0)).save_pretrained(tmp_path / "g")
    again = MoleculeGenerator.from_pretrained(tmp_path / "g")
    assert again.sampling["autoguidance_interval"] == [0.4, 1.0]
    for bad in ([0.6, 0.2], [0.0, 1.5], [float("nan"), 1.0], [0.5], "late"):
        with pytest.raises(ValueError, match="autoguidance_interval must be two flow times"):
            gen.sample_arrays(2, seed=0, autoguidance_interval=bad)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dit3d.cli", *map(str, args)], capture_output=True, text=True)


def test_export_and_sample_with_a_guide_from_the_command_line(runs, tmp_path):
    out = tmp_path / "guided"
    proc = run_cli("export", "molecules", runs["strong"], "-o", out, "--steps", "3", "--guide", runs["weak"],
                   "--autoguidance", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["sampling"]["autoguidance"] == 2.0 and config["provenance"]["guide"] == str(runs["weak"])
    assert config["sampling"]["autoguidance_interval"] == [0.0, 1.0]  # the default: guide everywhere
    proc = run_cli("sample", "molecules", "--checkpoint", out, "-n", "3", "--seed", "0", "--autoguidance", "1.5",
                   "--autoguidance-interval", "0.3", "1", "-o", tmp_path / "m.xyz")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "m.xyz").read_text().count("\n") > 3
    # a re-export of the folder keeps its guide
    proc = run_cli("export", "molecules", out, "-o", tmp_path / "again", "--autoguidance-interval", "0.4", "1")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert proc.returncode == 0 and "guide" in again and again["sampling"]["autoguidance_interval"] == [0.4, 1.0]
    # --guide none drops it, once the default no longer uses it
    proc = run_cli("export", "molecules", out, "-o", tmp_path / "bare", "--guide", "none")
    assert proc.returncode != 0 and "add --autoguidance 1" in proc.stderr and not (tmp_path / "bare").exists()
    proc = run_cli("export", "molecules", out, "-o", tmp_path / "bare", "--guide", "none", "--autoguidance", "1")
    bare = json.loads((tmp_path / "bare" / "config.json").read_text())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "guide" not in bare and bare["provenance"]["guide"] is None and bare["sampling"]["autoguidance"] == 1.0
    assert not any(k.startswith("guide.") for k in load_file(tmp_path / "bare" / "model.safetensors"))
    for args, message in (((), "--autoguidance: autoguidance needs a guide network"),
                          (("--guide", runs["other"]), "--guide")):
        bad = tmp_path / "bad"
        proc = run_cli("export", "molecules", runs["strong"], "-o", bad, "--autoguidance", "2", *args)
        assert proc.returncode != 0 and message in proc.stderr and not bad.exists(), proc.stderr[-2000:]


def test_sampling_defaults_for_one_kind_of_a_joint_model(tmp_path):
    from dit3d.api import CrystalGenerator

    from pathlib import Path

    if not (Path(__file__).resolve().parents[1] / "data/adit_joint_cpu/model.safetensors").is_file():
        pytest.skip("no shipped joint model")
    joint = MoleculeGenerator.from_pretrained("adit-joint-cpu")
    shared = dict(joint.shared_sampling)  # the shipped folder: molecules at 4, crystals at the shared 2
    assert joint.kind_sampling == {"molecule": {"autoguidance": 4.0}} and shared["autoguidance"] == 2.0
    joint.set_sampling_defaults("molecule", autoguidance=3.0)
    assert joint.sampling == {**shared, "autoguidance": 3.0} and joint.shared_sampling == shared
    joint.save_pretrained(tmp_path / "j")
    config = json.loads((tmp_path / "j" / "config.json").read_text())
    assert config["sampling"] == shared and config["kind_sampling"] == {"molecule": {"autoguidance": 3.0}}
    assert MoleculeGenerator.from_pretrained(tmp_path / "j").sampling["autoguidance"] == 3.0
    crystals = CrystalGenerator.from_pretrained(tmp_path / "j")
    assert crystals.sampling == shared and crystals.kind_sampling == {"molecule": {"autoguidance": 3.0}}
    joint.set_sampling_defaults("crystal", steps=10)  # another kind's default: this generator's stays
    assert joint.sampling == {**shared, "autoguidance": 3.0}
    crystals.set_sampling_defaults("crystal", steps=10)
    assert crystals.sampling["steps"] == 10 and crystals.kind_sampling["crystal"] == {"steps": 10}
    crystals.set_sampling_defaults(autoguidance=3.0)  # shared: replaces every kind's override of it
    assert crystals.kind_sampling == {"crystal": {"steps": 10}} and crystals.shared_sampling["autoguidance"] == 3.0
    with pytest.raises(ValueError, match="kind must be one of"):
        crystals.set_sampling_defaults("crystals", steps=3)
    with pytest.raises(ValueError, match="steps must be"):
        crystals.set_sampling_defaults("molecule", steps=0)
    config["kind_sampling"] = {"molecule": {"solver": "rk45"}}  # a bad stored override fails at load, named
    (tmp_path / "j" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="rk45"):
        CrystalGenerator.from_pretrained(tmp_path / "j")
    main_args = ["export", "crystals", "adit-joint-cpu", "-o", str(tmp_path / "k"), "--autoguidance", "5",
                 "--for-kind", "molecule"]
    from dit3d.cli import main

    main(main_args)
    with pytest.raises(SystemExit, match="--for-kind applies the sampling options given"):
        main(["export", "crystals", "adit-joint-cpu", "-o", str(tmp_path / "n"), "--for-kind", "crystal"])
    config = json.loads((tmp_path / "k" / "config.json").read_text())
    assert config["sampling"] == shared and config["kind_sampling"] == {"molecule": {"autoguidance": 5.0}}


def test_kind_sampling_refusals_and_old_folders(runs, tmp_path):
    gen = generator(runs["strong"]).set_guide(generator(runs["weak"]))  # a molecule-only model
    with pytest.raises(ValueError, match="never trained on crystals"):
        gen.set_sampling_defaults("crystal", steps=3)
    gen.set_sampling_defaults("molecule", autoguidance=2.0)
    with pytest.raises(ValueError, match=r"needs the guide; .*\(molecule defaults"):
        gen.set_guide(None)
    gen.set_sampling_defaults(autoguidance=1.0)  # shared: clears the molecule override too
    assert gen.kind_sampling == {} and gen.set_guide(None).guide is None
    gen.save_pretrained(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "kind_sampling" not in config and config["sampling"] == gen.sampling  # as folders were before
    for bad, match in ((["molecule"], "must map a kind"), ({"molecule": 4.0}, "must map options"),
                       ({"crystal": {"steps": 3}}, "never trained on crystals"),
                       ({"molecule": {"steps": 0}}, r"kind_sampling\['molecule'\]: steps must be")):
        (tmp_path / "plain" / "config.json").write_text(json.dumps({**config, "kind_sampling": bad}))
        with pytest.raises(ValueError, match=match):  # a PretrainedError naming the folder
            MoleculeGenerator.from_pretrained(tmp_path / "plain")
