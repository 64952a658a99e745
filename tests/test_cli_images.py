"""``dit3d sample|evaluate|export image`` on a tiny untrained image DiT."""
import json

import numpy as np
import pytest
import torch

from dit3d.api_images import ImageGenerator
from dit3d.cli import main
from dit3d.models import ImageDiTModule

pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return ImageDiTModule("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, num_timesteps=10).eval()


@pytest.fixture(scope="module")
def model_dir(module, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    ImageGenerator.from_lightning(module, sampling={"steps": 2, "guidance": 2.0}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ckpt(module, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in module.hparams.items()}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp, "epoch": 3, "global_step": 42,
                "datamodule_hyper_parameters": {"_class_path": "dit3d.data.DigitsDataModule", "image_size": 16,
                                                "seed": 0}}, path)
    return path


def test_export_writes_a_loadable_folder_with_provenance(ckpt, module, tmp_path):
    out = tmp_path / "exported"
    main(["export", "image", str(ckpt), "-o", str(out), "--steps", "3", "--guidance", "1.5",
          "--note", "command=dit3d fit -c x.yaml", "--note", "wall_time=15:00"])
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "dit-images" and config["sampling"]["steps"] == 3 and config["sampling"]["guidance"] == 1.5
    assert config["sampling"]["eta"] == 0.0  # no --eta: ImageGenerator's default, deterministic DDIM
    prov = config["provenance"]
    assert (prov["epoch"], prov["global_step"], prov["wall_time"]) == (3, 42, "15:00")
    assert prov["command"] == "dit3d fit -c x.yaml" and prov["data"] == {"image_size": 16, "seed": 0}
    gen = ImageGenerator.from_pretrained(out)
    ref = ImageGenerator.from_lightning(module)
    assert torch.equal(gen.sample(2, label=1, seed=0, steps=2), ref.sample(2, label=1, seed=0, steps=2, guidance=1.5))
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        main(["export", "image", str(ckpt), "-o", str(tmp_path / "x"), "--note", "oops"])
    with pytest.raises(SystemExit, match="no such checkpoint"):
        main(["export", "image", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "y")])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_sample_npy_writes_labels_and_sampling_record(model_dir, tmp_path, capsys):
    out = tmp_path / "s.npy"
    main(["sample", "image", "--checkpoint", str(model_dir), "-n", "20", "-o", str(out), "--seed", "3",
          "--guidance", "1.0"])
    x = np.load(out)
    labels = np.load(tmp_path / "s_labels.npy")
    record = json.loads((tmp_path / "s_sampling.json").read_text())
    assert x.shape == (20, 1, 16, 16) and x.dtype == np.float32 and np.abs(x).max() <= 1.0
    assert labels.tolist() == sorted(list(range(10)) * 2)  # classes in turn, sorted
    assert (record["seed"], record["guidance"], record["steps"], record["sampler"]) == (3, 1.0, 2, "ddim")
    assert record["checkpoint"] == str(model_dir) and record["num_samples"] == 20
    gen = ImageGenerator.from_pretrained(model_dir)
    assert np.array_equal(x, gen.sample(20, label=labels.tolist(), seed=3, guidance=1.0).numpy())  # seeded
    assert "wrote 20 images" in capsys.readouterr().err


def test_sample_with_cache_interval_reuses_attention_and_mlp(tmp_path):
    from dit3d.testing import randomize_

    torch.manual_seed(0)
    net = randomize_(ImageDiTModule("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, num_timesteps=10), 0.05)
    gen = ImageGenerator.from_lightning(net.eval(), sampling={"steps": 2, "guidance": 1.0})
    gen.save_pretrained(tmp_path / "m")
    for name, extra in (("full", []), ("cached", ["--cache-interval", "2"])):  # step 2 reuses step 1's branches
        main(["sample", "image", "--checkpoint", str(tmp_path / "m"), "-n", "4", "--label", "3", "-o",
              str(tmp_path / f"{name}.npy")] + extra)
    cached = np.load(tmp_path / "cached.npy")
    assert np.array_equal(cached, gen.sample(4, label=3, seed=0, cache_interval=2).numpy())
    assert not np.array_equal(cached, np.load(tmp_path / "full.npy"))
    main(["sample", "image", "--checkpoint", str(tmp_path / "m"), "-n", "4", "--label", "3", "-o",
          str(tmp_path / "int8.npy"), "--int8"])
    int8, full = np.load(tmp_path / "int8.npy"), np.load(tmp_path / "full.npy")
    assert json.loads((tmp_path / "int8_sampling.json").read_text())["int8"]
    assert not np.array_equal(int8, full) and np.abs(int8 - full).max() < 0.1  # int8 rounding, not another sample


def test_sample_png_of_one_label(model_dir, tmp_path):
    out = tmp_path / "three.png"
    main(["sample", "image", "--checkpoint", str(model_dir), "-n", "6", "--label", "3", "-o", str(out),
          "--per-row", "3", "--scale", "2"])
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (2 * (3 * 17 + 1), 2 * (2 * 17 + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.png"]


@pytest.mark.parametrize("args, match", [
    (["-o", "{tmp}/x.jpg"], "must end in .png or .npy"),
    (["-o", "{tmp}/no/x.png"], "does not exist"),
    (["-o", "{tmp}/x.png", "--label", "7x"], "unknown class '7x'"),
    (["-o", "{tmp}/x.png", "--checkpoint", "{tmp}/nothing"], "neither a pretrained folder"),
])
def test_sample_bad_arguments_fail_clearly(model_dir, tmp_path, args, match):
    argv = ["sample", "image", "--checkpoint", str(model_dir), "-n", "2"] + [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit, match=match):
        main(argv)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_samples_file(model_dir, tmp_path, capsys):
    out = tmp_path / "s.npy"
    main(["sample", "image", "--checkpoint", str(model_dir), "-n", "20", "-o", str(out)])
    capsys.readouterr()
    res = tmp_path / "res.json"
    main(["evaluate", "image", str(out), "--out", str(res)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert 0 <= result["class_accuracy"] <= 1 and result["frechet_classifier_distance"] > 0
    p = result["protocol"]
    assert p["classifier"]["path"].endswith("digits_classifier") and p["classifier"]["test_accuracy"] > 0.95
    assert p["num_samples"] == 20 and p["sampling"]["guidance"] == 2.0 and p["labels"].endswith("s_labels.npy")
    assert "not FID" in p["frechet_classifier_distance"] and {"torch", "scipy", "dit3d"} <= set(p["versions"])
    assert json.loads(res.read_text()) == result
    assert (tmp_path / "res_grid.png").read_bytes()[:4] == b"\x89PNG"
    # explicit labels; no sampling record is fine
    np.save(tmp_path / "lab.npy", np.zeros(20, dtype=np.int64))
    (tmp_path / "s_sampling.json").unlink()
    main(["evaluate", "image", str(out), "--labels", str(tmp_path / "lab.npy")])
    other = json.loads(capsys.readouterr().out)
    assert other["protocol"]["sampling"] is None and other["protocol"]["class_counts"] == {"0": 20}


def test_evaluate_draws_per_class_samples(model_dir, capsys):
    main(["evaluate", "image", "--checkpoint", str(model_dir), "--per-class", "2", "--guidance", "3.0", "--seed", "1"])
    result = json.loads(capsys.readouterr().out)
    p = result["protocol"]
    assert p["num_samples"] == 20 and p["class_counts"] == {str(c): 2 for c in range(10)}
    assert (p["sampling"]["guidance"], p["sampling"]["seed"], p["seed"]) == (3.0, 1, 1)


@pytest.mark.parametrize("args, match", [
    ([], "either a samples .npy or --per-class"),
    (["{tmp}/s.npy", "--per-class", "2"], "either a samples .npy or --per-class"),
    (["{tmp}/s.npy", "--guidance", "2"], "--guidance applies to --per-class sampling only"),
    (["{tmp}/s.npy", "--autoguidance", "2"], "--autoguidance applies to --per-class sampling only"),
    (["{tmp}/s.npy"], "no labels; pass --labels"),
    (["{tmp}/missing.npy"], "samples file does not exist"),
    (["{tmp}/s.npy", "--labels", "{tmp}/short.npy"], r"labels must be \(4,\) integers"),
    (["{tmp}/bad.npy", "--labels", "{tmp}/short.npy"], r"must be \(n >= 1, 1, 16, 16\)"),
    (["{tmp}/s.npy", "--labels", "{tmp}/short.npy", "--out", "{tmp}/no/res.json"], "does not exist"),
])
def test_evaluate_bad_inputs_fail_clearly_and_write_nothing(tmp_path, args, match):
    np.save(tmp_path / "s.npy", np.zeros((4, 1, 16, 16), np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((4, 16, 16), np.float32))
    np.save(tmp_path / "short.npy", np.zeros(3, np.int64))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit, match=match):
        main(["evaluate", "image"] + [a.format(tmp=tmp_path) for a in args])
    assert sorted(p.name for p in tmp_path.iterdir()) == before
