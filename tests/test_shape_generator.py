"""ShapeGenerator, load_dit3d_checkpoint and `dit3d sample|export pointclouds` on a tiny trained DiT-3D."""
import json

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

import dit3d
from dit3d.api import SHIPPED, ShapeGenerator, load_dit3d_checkpoint
from dit3d.api_shapes import DEFAULT_SAMPLING
from dit3d.cli import main
from dit3d.data.pointcloud_io import read_ply
from dit3d.data.pointclouds import PointCloudDataModule
from dit3d.models import DiT3DModule
from dit3d.nn.compiled import cpp_compiler, is_compiled
from dit3d.pretrained import PretrainedError, save_pretrained

CHAIR = "03001627"
STEPS = 4  # DDIM steps in these tests: enough to exercise the loop, fast on one thread


def write_tree(root, counts=(3, 1, 1)):
    """PC15k clouds far from the unit frame (mean ~ (1, -2, 0.5), std ~ 0.3 + spread)."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val", "test"), counts):
        folder = root / CHAIR / split
        folder.mkdir(parents=True)
        for i in range(n):
            cloud = np.array([1.0, -2.0, 0.5]) + 0.3 * rng.standard_normal((15000, 3))
            np.save(folder / f"shape{i:02d}.npy", cloud.astype(np.float32))


def tiny_module(**kw):
    return DiT3DModule("DiT-3D-Mini/4", resolution=8, depth=1, num_timesteps=50, lr=1e-3, ema_decay=0.999, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapegen")
    write_tree(root / "pc15k")
    dm = PointCloudDataModule(str(root / "pc15k"), ["chair"], batch_size=2, num_points=64)
    with torch.random.fork_rng():  # training draws from the global RNG; leave it as it was
        torch.manual_seed(0)
        module = tiny_module(num_classes=1)
        trainer = Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                          accelerator="cpu", devices=1)
        trainer.fit(module, datamodule=dm)
    ckpt = root / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    main(["export", "pointclouds", str(ckpt), "-o", str(root / "gen"), "--steps", str(STEPS), "--note", "who=test"])
    return {"root": root, "dm": dm, "module": module.eval(), "ckpt": ckpt, "gen_dir": root / "gen"}


def test_export_and_round_trip_give_identical_samples(trained):
    module, stats = load_dit3d_checkpoint(trained["ckpt"])
    assert stats == trained["dm"].stats and stats["categories"] == ["chair"] and stats["normalization"] == "global"
    config = json.loads((trained["gen_dir"] / "config.json").read_text())
    assert config["kind"] == "dit3d-pointclouds" and config["categories"] == ["chair"]
    assert config["sampling"] == {"sampler": "ddim", "steps": STEPS, "guidance": 1.0, "eta": 1.0, "batch_size": 64,
                                  "cache_interval": 1, "autoguidance": 1.0}  # no guide: off
    assert config["normalization"]["mean"] == stats["mean"] and config["normalization"]["std"] == stats["std"]
    assert config["diffusion"]["num_timesteps"] == 50 and config["dit3d"]["resolution"] == 8
    assert config["provenance"] == {"checkpoint": str(trained["ckpt"]), "who": "test"}

    pre = ShapeGenerator.from_pretrained(trained["gen_dir"])
    # The EMA network is what ships, not the raw one.
    ema, raw = trained["module"].ema_model.state_dict(), trained["module"].model.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in pre.net.state_dict().items())
    assert any(not torch.equal(v, raw[k]) for k, v in pre.net.state_dict().items())
    a = pre.sample_arrays(3, 32, seed=7)  # stored default steps
    assert a.shape == (3, 32, 3) and a.dtype == np.float32
    for gen in (ShapeGenerator.from_lightning(trained["module"], trained["dm"].stats, {"steps": STEPS}),
                ShapeGenerator.from_lightning(module, stats, {"steps": STEPS})):
        assert np.array_equal(gen.sample_arrays(3, 32, seed=7), a)  # bit-identical
    clouds = pre.sample(3, 32, category="chair", seed=7)  # the same batch: DDIM at eta 1 draws noise per step
    assert len(clouds) == 3 and type(clouds[0]).__name__ == "PointCloud"
    assert np.array_equal(np.asarray(clouds[1].vertices, dtype=np.float32), a[1])


def test_seeds_reproduce_and_global_rng_untouched(trained):
    gen = ShapeGenerator.from_pretrained(trained["gen_dir"])
    a, b = gen.sample_arrays(2, 16, seed=3), gen.sample_arrays(2, 16, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, gen.sample_arrays(2, 16, seed=4))
    assert not np.array_equal(a[0], a[1])
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    x, y = gen.sample_arrays(1, 16), gen.sample_arrays(1, 16, seed=5)  # fresh seed, then a fixed one
    assert torch.equal(torch.rand(3), expected_torch) and np.array_equal(np.random.rand(3), expected_np)
    assert not np.array_equal(x, gen.sample_arrays(1, 16))  # None draws a fresh seed each call
    assert np.array_equal(y, gen.sample_arrays(1, 16, seed=5))  # a given seed repeats
    # Clouds are denoised in batches of batch_size; the first batch draws first, so it repeats.
    assert np.array_equal(gen.sample_arrays(2, 16, seed=3, batch_size=1)[0], gen.sample_arrays(1, 16, seed=3)[0])


def test_denormalisation_into_the_data_frame(trained):
    module, stats = trained["module"], trained["dm"].stats
    gen = ShapeGenerator.from_lightning(module, stats)
    raw = module.sample(2, 32, steps=STEPS, eta=gen.sampling["eta"], generator=torch.Generator().manual_seed(5))
    expected = raw.double().numpy() * stats["std"] + np.asarray(stats["mean"])
    got = gen.sample_arrays(2, 32, seed=5, steps=STEPS)
    assert abs(stats["std"] - 1) > 0.1 and np.abs(stats["mean"]).min() > 0.3  # a frame far from the unit one
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    for norm in (None, {"normalization": "per-shape"}, {"normalization": "none"}):  # samples left as drawn
        same = ShapeGenerator.from_lightning(module, norm).sample_arrays(2, 32, seed=5, steps=STEPS)
        np.testing.assert_allclose(same, raw.numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="'std'"):
        ShapeGenerator.from_lightning(module, {"normalization": "global", "mean": [0, 0, 0], "std": 0.0})


def test_categories_options_and_errors(trained):
    gen = ShapeGenerator.from_lightning(trained["module"], trained["dm"].stats, {"steps": 2})
    base = gen.sample_arrays(1, 16, seed=0)
    for category in ("chair", "Chair", CHAIR, 0):
        assert np.array_equal(gen.sample_arrays(1, 16, category=category, seed=0), base)
    with pytest.raises(ValueError, match=r"unknown category 'airplane'; this model knows 0: chair"):
        gen.sample_arrays(1, 16, category="airplane")
    with pytest.raises(ValueError, match="unknown category 1"):
        gen.sample_arrays(1, 16, category=1)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            gen.sample_arrays(bad)
    with pytest.raises(ValueError, match=r"unknown sampling options \['temperature'\]"):
        gen.sample_arrays(1, 16, temperature=1.0)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        gen.sample_arrays(1, 16, sampler="euler")
    with pytest.raises(ValueError, match="guidance must be a finite float"):
        gen.sample_arrays(1, 16, guidance=float("nan"))
    assert gen.sample_arrays(1, 8, sampler="ddpm", seed=0).shape == (1, 8, 3)  # all T = 50 steps
    with pytest.raises(ValueError, match="ancestral DDPM runs all 50 steps"):
        gen.sample_arrays(1, 8, sampler="ddpm", steps=10)
    two = tiny_module(num_classes=2)
    multi = ShapeGenerator.from_lightning(two, {"normalization": "none", "categories": ["chair", "airplane"]})
    with pytest.raises(ValueError, match=r"knows 2 categories \(0: chair, 1: airplane\); pass category"):
        multi.sample_arrays(1, 8)
    assert multi.label_of("airplane") == 1 and multi.label_of("02691156") == 1
    with pytest.raises(ValueError, match="one name per class"):
        ShapeGenerator.from_lightning(two, categories=["chair"])
    with pytest.raises(TypeError, match="expects a DiT3DModule"):
        ShapeGenerator.from_lightning(torch.nn.Linear(2, 2))


def test_folders_of_other_kinds_and_names(trained, tmp_path):
    save_pretrained(tmp_path / "mol", "adit-molecules", {}, {"x": torch.zeros(1)})
    with pytest.raises(PretrainedError, match="holds a 'adit-molecules' model, expected 'dit3d-pointclouds'"):
        ShapeGenerator.from_pretrained(tmp_path / "mol")
    with pytest.raises(PretrainedError, match="neither a pretrained folder nor a shipped name"):
        ShapeGenerator.from_pretrained(tmp_path / "missing")
    with pytest.raises(PretrainedError, match="must be exported first"):
        ShapeGenerator.from_pretrained(trained["ckpt"])
    assert SHIPPED["dit3d-chair-cpu"] == "dit3d_chair_cpu" and dit3d.ShapeGenerator is ShapeGenerator
    with pytest.raises(ValueError, match="reserved"):
        ShapeGenerator.from_pretrained(trained["gen_dir"]).save_pretrained(tmp_path / "x", extra={"sampling": 1})


def test_sample_command_writes_npy_and_ply(trained, tmp_path):
    gen = ShapeGenerator.from_pretrained(trained["gen_dir"])
    common = ["sample", "pointclouds", "--checkpoint", str(trained["gen_dir"]), "--num-points", "32", "--seed", "1",
              "--no-progress"]
    main(common + ["-n", "3", "-o", str(tmp_path / "out.npy"), "--category", "chair"])
    arr = np.load(tmp_path / "out.npy")
    assert arr.shape == (3, 32, 3) and arr.dtype == np.float32
    assert np.array_equal(arr, gen.sample_arrays(3, 32, seed=1))
    main(common + ["-n", "3", "-o", str(tmp_path / "c.ply")])  # the same batch: DDIM at eta 1 draws noise per step
    main(common + ["-n", "1", "-o", str(tmp_path / "one.ply"), "--steps", "2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c_000.ply", "c_001.ply", "c_002.ply", "one.ply", "out.npy"]
    np.testing.assert_array_equal(read_ply(tmp_path / "c_001.ply"), arr[1])  # same seed, same clouds
    assert np.array_equal(read_ply(tmp_path / "one.ply"), gen.sample_arrays(1, 32, seed=1, steps=2)[0])


def test_sample_command_errors_leave_no_file(trained, tmp_path, monkeypatch):
    common = ["sample", "pointclouds", "--checkpoint", str(trained["gen_dir"]), "--num-points", "16", "--no-progress"]
    cases = [(["-n", "2", "-o", str(tmp_path / "x.npy"), "--category", "airplane"], "unknown category 'airplane'"),
             (["-n", "2", "-o", str(tmp_path / "x.txt")], "must end in .npy or .ply"),
             (["-n", "2", "-o", str(tmp_path / "no" / "x.npy")], "does not exist"),
             (["-n", "2", "-o", str(tmp_path / "x.npy"), "--sampler", "ddpm", "--steps", "3"], "all 50 steps")]
    for args, message in cases:
        with pytest.raises(SystemExit, match=message):
            main(common + args)
    with pytest.raises(SystemExit, match="neither a pretrained folder"):
        main(["sample", "pointclouds", "--checkpoint", str(tmp_path / "nope"), "-o", str(tmp_path / "x.npy")])
    import dit3d.data.pointcloud_io as io

    real, calls = io.write_ply, []

    def flaky(path, cloud):  # the second file fails: the first must be removed again
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, cloud)

    monkeypatch.setattr(io, "write_ply", flaky)
    with pytest.raises(SystemExit, match="error: disk full"):  # OSErrors end as one-line CLI errors
        main(common + ["-n", "3", "-o", str(tmp_path / "y.ply")])
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_export_command_errors(trained, tmp_path):
    torch.save({"state_dict": {}, "hyper_parameters": {"autoencoder": {}}}, tmp_path / "other.ckpt")
    with pytest.raises(SystemExit, match="not a DiT3DModule checkpoint"):
        main(["export", "pointclouds", str(tmp_path / "other.ckpt"), "-o", str(tmp_path / "g")])
    with pytest.raises(SystemExit, match="no such checkpoint"):
        main(["export", "pointclouds", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "g")])
    (tmp_path / "keep").mkdir()
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        main(["export", "pointclouds", str(trained["ckpt"]), "-o", str(tmp_path / "keep")])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        main(["export", "pointclouds", str(trained["ckpt"]), "-o", str(tmp_path / "g"), "--note", "oops"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "other.ckpt"]


def test_export_without_data_module_statistics(trained, tmp_path, capsys):
    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    del ckpt["PointCloudDataModule"]  # trained from plain dataloaders: no statistics to undo
    torch.save(ckpt, tmp_path / "bare.ckpt")
    assert load_dit3d_checkpoint(tmp_path / "bare.ckpt")[1] is None
    main(["export", "pointclouds", str(tmp_path / "bare.ckpt"), "-o", str(tmp_path / "g"), "--sampler", "ddpm"])
    assert "holds no PointCloudDataModule statistics" in capsys.readouterr().err
    gen = ShapeGenerator.from_pretrained(tmp_path / "g")
    assert gen.normalization == {"normalization": "none"} and gen.categories is None
    assert gen.sampling["sampler"] == "ddpm" and gen.sampling["steps"] is None
    raw = trained["module"].sample(1, 8, sampler="ddpm", generator=torch.Generator().manual_seed(2))
    assert np.array_equal(gen.sample_arrays(1, 8, category=0, seed=2), raw.numpy())


def test_export_stores_the_ddim_eta(trained, tmp_path):
    main(["export", "pointclouds", str(trained["ckpt"]), "-o", str(tmp_path / "g"), "--eta", "0.5"])
    gen = ShapeGenerator.from_pretrained(tmp_path / "g")
    assert gen.sampling["eta"] == 0.5 and gen.sampling["sampler"] == "ddim"
    raw = trained["module"].sample(2, 8, sampler="ddim", steps=gen.sampling["steps"], eta=0.5,
                                   generator=torch.Generator().manual_seed(5))
    stats = gen.normalization
    expected = raw.numpy() * stats["std"] + np.asarray(stats["mean"]) if stats.get("normalization") == "global" \
        else raw.numpy()
    np.testing.assert_allclose(gen.sample_arrays(2, 8, seed=5), expected, rtol=1e-5, atol=1e-6)


def test_export_defaults_are_the_generators(trained, tmp_path):
    # no --steps / --eta: the folder samples as DEFAULT_SAMPLING says (DDIM 100, eta 1: the chair card's
    # choice), its 100 steps capped at this tiny schedule's T = 50
    assert (DEFAULT_SAMPLING["sampler"], DEFAULT_SAMPLING["steps"], DEFAULT_SAMPLING["eta"]) == ("ddim", 100, 1.0)
    main(["export", "pointclouds", str(trained["ckpt"]), "-o", str(tmp_path / "g")])
    stored = json.loads((tmp_path / "g" / "config.json").read_text())["sampling"]
    assert (stored["sampler"], stored["steps"], stored["eta"]) == ("ddim", 50, 1.0)
    assert ShapeGenerator.from_pretrained(tmp_path / "g").diffusion.num_timesteps == 50
    main(["export", "pointclouds", str(trained["ckpt"]), "-o", str(tmp_path / "h"), "--steps", "51"])  # given: kept
    assert json.loads((tmp_path / "h" / "config.json").read_text())["sampling"]["steps"] == 51


def test_export_stores_the_cache_interval_and_sampling_reuses_branches(trained, tmp_path):
    main(["export", "pointclouds", str(trained["ckpt"]), "-o", str(tmp_path / "g"), "--steps", "6",
          "--cache-interval", "2"])
    gen = ShapeGenerator.from_pretrained(tmp_path / "g")
    assert gen.sampling["cache_interval"] == 2
    calls = []
    hook = gen.net.dit.trunk.blocks[0].attn.register_forward_hook(lambda *_: calls.append(1))
    cached = gen.sample_arrays(2, 8, seed=5)
    assert len(calls) == 3  # full steps 0, 2, 4 of 6
    full = gen.sample_arrays(2, 8, seed=5, cache_interval=1)
    hook.remove()
    assert len(calls) == 3 + 6
    raw = trained["module"].sample(2, 8, steps=6, eta=gen.sampling["eta"], generator=torch.Generator().manual_seed(5),
                                   cache_interval=2)
    np.testing.assert_allclose(cached, gen.denormalize(raw.numpy()), rtol=1e-5, atol=1e-6)
    assert np.abs(cached - full).max() > 0  # reuse changed something (the trunk tests check what)
    with pytest.raises(ValueError, match="cache_interval"):
        gen.sample_arrays(2, 8, seed=5, cache_interval=0)
    out = tmp_path / "c.npy"
    main(["sample", "pointclouds", "--checkpoint", str(tmp_path / "g"), "-n", "2", "--num-points", "8", "--seed", "5",
          "--cache-interval", "1", "--no-progress", "-o", str(out)])
    np.testing.assert_allclose(np.load(out), full, rtol=1e-6)


def test_int8_sampling_is_close_and_refuses_to_save(trained, tmp_path):
    gen = ShapeGenerator.from_pretrained(trained["gen_dir"])
    full = gen.sample_arrays(2, 8, seed=5)
    assert gen.quantize_int8() is gen and gen.quantize_int8() is gen  # a second call changes nothing
    assert type(gen.net.dit.trunk.blocks[0].mlp.fc1).__name__ == "Int8Linear"
    int8 = gen.sample_arrays(2, 8, seed=5)
    assert np.abs(int8 - full).max() > 0 and np.allclose(int8, full, atol=0.05 * np.abs(full).max())
    with pytest.raises(ValueError, match="int8"):
        gen.save_pretrained(tmp_path / "q")
    assert not (tmp_path / "q").exists()
    out = tmp_path / "q.npy"
    main(["sample", "pointclouds", "--checkpoint", str(trained["gen_dir"]), "-n", "2", "--num-points", "8",
          "--seed", "5", "--int8", "--no-progress", "-o", str(out)])
    np.testing.assert_array_equal(np.load(out), int8)
    with pytest.raises(SystemExit, match="CPU only"):
        main(["sample", "pointclouds", "--checkpoint", str(trained["gen_dir"]), "-n", "2", "--int8",
              "--device", "cuda", "-o", str(tmp_path / "never.npy")])
    assert not (tmp_path / "never.npy").exists()


def test_numpy_sampling_defaults_are_stored_as_plain_numbers(trained, tmp_path):
    gen = ShapeGenerator.from_lightning(trained["module"], trained["dm"].stats,
                                        {"steps": np.int64(3), "eta": np.float32(0.5)})
    assert type(gen.sampling["steps"]) is int and type(gen.sampling["eta"]) is float
    config = json.loads((gen.save_pretrained(tmp_path / "g") / "config.json").read_text())
    assert config["sampling"]["steps"] == 3 and config["sampling"]["eta"] == 0.5


def test_trunk_options_are_stored_with_the_network(tmp_path):
    module = tiny_module(trunk_options={"mlp_act": "gelu"})
    assert module.model.config["mlp_act"] == "gelu" and module.hparams["trunk_options"] == {"mlp_act": "gelu"}
    assert {m.approximate for m in module.modules() if isinstance(m, torch.nn.GELU)} == {"none"}
    ShapeGenerator.from_lightning(module, {"normalization": "none"}).save_pretrained(tmp_path / "gen")
    assert json.loads((tmp_path / "gen" / "config.json").read_text())["dit3d"]["mlp_act"] == "gelu"
    net = ShapeGenerator.from_pretrained(tmp_path / "gen").net
    assert {m.approximate for m in net.modules() if isinstance(m, torch.nn.GELU)} == {"none"}
    assert "mlp_act" not in tiny_module().model.config  # unset: configs of earlier exports stay as they were


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_sampling_matches_eager(trained, tmp_path):
    gen = ShapeGenerator.from_pretrained(trained["gen_dir"])
    eager = gen.sample_arrays(2, 8, seed=5)
    assert gen.compile() is gen and is_compiled(gen.net)
    np.testing.assert_allclose(gen.sample_arrays(2, 8, seed=5), eager, rtol=1e-4, atol=1e-5)
    gen.save_pretrained(tmp_path / "again")  # compiled in place: it still saves as the float model
    out = tmp_path / "c.npy"
    main(["sample", "pointclouds", "--checkpoint", str(tmp_path / "again"), "-n", "2", "--num-points", "8",
          "--seed", "5", "--compile", "--no-progress", "-o", str(out)])
    np.testing.assert_allclose(np.load(out), eager, rtol=1e-4, atol=1e-5)


def test_compile_option_without_a_cpp_compiler(trained, tmp_path, monkeypatch):
    import shutil

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="--compile: .*install g\\+\\+ or clang\\+\\+"):
        main(["sample", "pointclouds", "--checkpoint", str(trained["gen_dir"]), "-n", "2", "--compile",
              "-o", str(tmp_path / "never.npy")])
    assert not (tmp_path / "never.npy").exists()


def test_export_again_from_a_folder_settles_sampler_and_steps(trained, tmp_path, capsys):
    fresh = json.loads((trained["gen_dir"] / "config.json").read_text())["sampling"]
    assert (fresh["guidance"], fresh["cache_interval"]) == (1.0, 1)  # a .ckpt export: the generator's defaults
    ddpm = tmp_path / "ddpm"
    main(["export", "pointclouds", str(trained["gen_dir"]), "-o", str(ddpm), "--sampler", "ddpm"])
    assert ShapeGenerator.from_pretrained(ddpm).sampling["steps"] is None
    with pytest.raises(SystemExit, match="--steps applies to --sampler ddim only"):  # the folder samples with DDPM
        main(["export", "pointclouds", str(ddpm), "-o", str(tmp_path / "bad"), "--steps", "3"])
    main(["export", "pointclouds", str(ddpm), "-o", str(tmp_path / "ddim"), "--sampler", "ddim"])
    back = ShapeGenerator.from_pretrained(tmp_path / "ddim").sampling
    assert (back["sampler"], back["steps"]) == ("ddim", 50)  # DEFAULT_SAMPLING's 100, capped at T = 50
    main(["export", "pointclouds", str(trained["gen_dir"]), "-o", str(tmp_path / "guided"), "--guide",
          str(trained["ckpt"]), "--autoguidance", "1.5"])
    again = ShapeGenerator.from_pretrained(tmp_path / "guided")
    assert again.sampling == {**ShapeGenerator.from_pretrained(trained["gen_dir"]).sampling, "autoguidance": 1.5}
    assert "statistics" not in capsys.readouterr().err  # a guide's checkpoint is loaded quietly
    assert not (tmp_path / "bad").exists()
