"""``dit3d sample|evaluate|export video`` on a tiny untrained video DiT, unconditional and class-conditional
(``--digit``, ``--digits``, ``--true-digits``, ``--guidance``)."""
import json

import numpy as np
import pytest
import torch

from dit3d.api_video import DEFAULT_SAMPLING, VideoGenerator
from dit3d.cli import main
from dit3d.models import VideoDiTModule
from dit3d.testing import randomize_

pytest.importorskip("sklearn.datasets")

DATA_HP = {"_class_path": "dit3d.data.MovingDigitsDataModule", "batch_size": 4, "num_frames": 4, "image_size": 16,
           "digit_size": 8, "num_digits": 1, "speed": [1.0, 3.0], "num_train": 10, "num_test": 10,
           "test_fraction": 0.2, "seed": 0, "num_workers": 0, "drop_last": False}


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=24, num_heads=4,
                          num_timesteps=10).eval()


@pytest.fixture(scope="module")
def ckpt(module, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in module.hparams.items()}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp, "epoch": 2, "global_step": 17,
                "datamodule_hyper_parameters": DATA_HP}, path)
    return path


@pytest.fixture(scope="module")
def model_dir(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny"
    main(["export", "video", str(ckpt), "-o", str(out), "--steps", "2", "--note", "wall_time=30:00"])
    return out


def test_export_stores_the_data_settings_and_provenance(model_dir, module):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["kind"] == "dit-video" and config["sampling"]["steps"] == 2
    assert config["data"] == {"num_frames": 4, "image_size": 16, "digit_size": 8, "num_digits": 1,
                              "speed": [1.0, 3.0], "test_fraction": 0.2, "seed": 0}
    prov = config["provenance"]
    assert (prov["epoch"], prov["global_step"], prov["wall_time"]) == (2, 17, "30:00")
    gen = VideoGenerator.from_pretrained(model_dir)
    assert torch.equal(gen.sample(2, seed=0), VideoGenerator.from_lightning(module).sample(2, seed=0, steps=2))


def test_export_stores_the_default_eta(ckpt, module, tmp_path):
    # no --eta: VideoGenerator's default, eta 1 (the video card's choice); --eta 0 is stored and used
    main(["export", "video", str(ckpt), "-o", str(tmp_path / "d"), "--steps", "2"])
    assert VideoGenerator.from_pretrained(tmp_path / "d").sampling["eta"] == 1.0 == DEFAULT_SAMPLING["eta"]
    main(["export", "video", str(ckpt), "-o", str(tmp_path / "m"), "--steps", "2", "--eta", "0"])
    gen = VideoGenerator.from_pretrained(tmp_path / "m")
    assert gen.sampling["eta"] == 0.0
    reference = VideoGenerator.from_lightning(module).sample(2, seed=0, steps=2, eta=0.0)
    assert torch.equal(gen.sample(2, seed=0), reference)
    assert not torch.equal(gen.sample(2, seed=0, eta=1.0), reference)  # the stored eta is what changed it


def test_sample_predict_to_npy_with_truth_and_known(model_dir, tmp_path, capsys):
    out = tmp_path / "p.npy"
    main(["sample", "video", "--checkpoint", str(model_dir), "--task", "predict", "--context", "2", "-n", "3",
          "-o", str(out), "--seed", "1"])
    clips, known = np.load(out), np.load(tmp_path / "p_known.npy")
    truth = np.load(tmp_path / "p_truth.npy")
    record = json.loads((tmp_path / "p_sampling.json").read_text())
    assert clips.shape == truth.shape == (3, 1, 4, 16, 16) and known.shape == (3, 1, 4, 16, 16)
    assert known[:, 0, :2].all() and not known[:, 0, 2:].any()
    k = np.broadcast_to(known, clips.shape)
    assert np.array_equal(clips[k], truth[k])
    assert (record["task"], record["context"], record["seed"], record["steps"]) == ("predict", 2, 1, 2)
    assert "wrote 3 clips (predict)" in capsys.readouterr().err
    main(["sample", "video", "--checkpoint", str(model_dir), "--task", "predict", "--context", "2", "-n", "3",
          "-o", str(tmp_path / "q.npy"), "--seed", "1", "--int8"])
    int8 = np.load(tmp_path / "q.npy")
    assert np.array_equal(int8[k], truth[k])  # given frames stay exact
    assert json.loads((tmp_path / "q_sampling.json").read_text())["int8"] and not record["int8"]


def test_sample_png_strip_and_gif(model_dir, tmp_path):
    from PIL import Image

    main(["sample", "video", "--checkpoint", str(model_dir), "--task", "interpolate", "-n", "2",
          "-o", str(tmp_path / "i.png"), "--scale", "1"])
    with Image.open(tmp_path / "i.png") as im:
        assert im.size == (4 * 18 + 2, 4 * 18 + 2)  # 4 frames; truth + sample rows for 2 clips
    main(["sample", "video", "--checkpoint", str(model_dir), "--task", "unconditional", "-n", "4",
          "-o", str(tmp_path / "u.gif")])
    with Image.open(tmp_path / "u.gif") as im:
        assert im.n_frames == 4
    with pytest.raises(SystemExit, match="--context applies to conditioned tasks"):
        main(["sample", "video", "--checkpoint", str(model_dir), "--task", "unconditional", "--context", "1",
              "-o", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="must end in"):
        main(["sample", "video", "--checkpoint", str(model_dir), "-o", str(tmp_path / "x.jpg")])


def test_evaluate_prints_per_task_mse_psnr_and_writes_strips(model_dir, tmp_path, capsys):
    out = tmp_path / "res.json"
    main(["evaluate", "video", "--checkpoint", str(model_dir), "-n", "3", "--tasks", "predict", "interpolate",
          "--out", str(out)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["tasks"]) == {"predict", "interpolate"}
    pred = result["tasks"]["predict"]
    assert pred["mse"] > 0 and pred["psnr"] > 0 and pred["clips"] == 3
    assert pred["given_frames"] == [1, 1, 0, 0] and result["tasks"]["interpolate"]["given_frames"] == [1, 0, 0, 1]
    assert pred["baseline_copy_nearest_given_frame"]["mse"] > 0
    acc = pred["digit_accuracy"]
    assert acc["frames"] == 3 * 2 and "digits_classifier" in acc["judge"]
    assert all(0.0 <= acc[k] <= 1.0 for k in ("generated", "ground_truth", "copy_baseline"))
    assert json.loads(out.read_text()) == result
    assert (tmp_path / "res_predict.png").is_file() and (tmp_path / "res_interpolate.png").is_file()


def test_evaluate_unconditional_scores_digit_realism_beside_real_clips(model_dir, tmp_path, capsys):
    out = tmp_path / "res.json"
    main(["evaluate", "video", "--checkpoint", str(model_dir), "-n", "3", "--tasks", "unconditional",
          "--out", str(out)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    realism = result["tasks"]["unconditional"]["digit_realism"]
    for side in ("generated", "held_out_real"):
        assert realism[side]["frames"] == 3 * 4 and realism[side]["frechet_digit_distance"] >= 0
        assert 0 <= realism[side]["confident_fraction"] <= 1 and 0.25 <= realism[side]["label_consistency"] <= 1
    assert "clips 3..5" in realism["reference"] and "not FID" in realism["judge"]
    assert result["protocol"]["sampling"][0]["task"] == "unconditional"
    assert (tmp_path / "res_unconditional.png").is_file()


@pytest.fixture(scope="module")
def cond_dir(tmp_path_factory):
    torch.manual_seed(0)
    m = VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=24, num_heads=4,
                       num_timesteps=10, num_classes=10)
    m = randomize_(m, std=0.05).eval()  # an untrained net outputs 0 whatever the digit
    folder = tmp_path_factory.mktemp("cond")
    ckpt = folder / "last.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams), "epoch": 1, "global_step": 5,
                "datamodule_hyper_parameters": DATA_HP}, ckpt)
    main(["export", "video", str(ckpt), "-o", str(folder / "tiny"), "--steps", "2"])
    return folder / "tiny"


def test_sample_a_digit_with_guidance(cond_dir, tmp_path, capsys):
    out = tmp_path / "threes.npy"
    main(["sample", "video", "--checkpoint", str(cond_dir), "--task", "unconditional", "--digit", "3", "--guidance",
          "2", "-n", "2", "-o", str(out)])
    record = json.loads((tmp_path / "threes_sampling.json").read_text())
    assert (record["digits"], record["guidance"], record["steps"]) == (3, 2.0, 2)
    gen = VideoGenerator.from_pretrained(cond_dir)
    assert np.array_equal(np.load(out), gen.sample(2, seed=0, digit=3, guidance=2.0).numpy())
    assert not np.array_equal(np.load(out), gen.sample(2, seed=0, digit=3).numpy())
    main(["sample", "video", "--checkpoint", str(cond_dir), "--task", "predict", "--digit", "5", "-n", "2",
          "-o", str(tmp_path / "p.npy")])  # held-out clips conditioned on a digit of the caller's choice
    assert json.loads((tmp_path / "p_sampling.json").read_text())["digits"] == 5
    truth = gen.test_clips(2)
    assert np.array_equal(np.load(tmp_path / "p.npy"), gen.run_task("predict", truth, seed=0, digit=5)[0].numpy())
    main(["sample", "video", "--checkpoint", str(cond_dir), "--task", "unconditional", "--digit", "3", "--guidance",
          "2", "-n", "2", "--cache-interval", "2", "-o", str(tmp_path / "cached.npy")])
    cached = np.load(tmp_path / "cached.npy")
    assert np.array_equal(cached, gen.sample(2, seed=0, digit=3, guidance=2.0, cache_interval=2).numpy())
    assert not np.array_equal(cached, np.load(out))
    with pytest.raises(SystemExit, match="--guidance needs --digit"):
        main(["sample", "video", "--checkpoint", str(cond_dir), "--task", "unconditional", "--guidance", "2",
              "-o", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match=r"digits must lie in 0\.\.9"):
        main(["sample", "video", "--checkpoint", str(cond_dir), "--task", "unconditional", "--digit", "12",
              "-o", str(tmp_path / "x.png")])
    main(["sample", "video", "--checkpoint", str(cond_dir), "--task", "unconditional", "--digit", "1", "7", "-n", "2",
          "-o", str(tmp_path / "one_seven.npy")])  # one digit per clip
    record = json.loads((tmp_path / "one_seven_sampling.json").read_text())
    assert record["digits"] == [1, 7]
    assert np.array_equal(np.load(tmp_path / "one_seven.npy"), gen.sample(2, seed=0, digit=[1, 7]).numpy())
    guided = tmp_path / "guided"
    main(["export", "video", str(cond_dir.parent / "last.ckpt"), "-o", str(guided), "--steps", "2", "--guidance", "2"])
    main(["sample", "video", "--checkpoint", str(guided), "--task", "unconditional", "--digit", "3", "-n", "2",
          "-o", str(tmp_path / "g.npy")])  # the stored weight guides towards the digit
    assert json.loads((tmp_path / "g_sampling.json").read_text())["guidance"] == 2.0
    assert np.array_equal(np.load(tmp_path / "g.npy"), np.load(out))
    main(["sample", "video", "--checkpoint", str(guided), "--task", "unconditional", "-n", "2",
          "-o", str(tmp_path / "any.npy")])  # no digit: nothing to guide towards
    assert json.loads((tmp_path / "any_sampling.json").read_text())["guidance"] == 1.0
    with pytest.raises(SystemExit, match="exactly -n 3"):
        main(["sample", "video", "--checkpoint", str(cond_dir), "--task", "unconditional", "--digit", "1", "7",
              "-n", "3", "-o", str(tmp_path / "x.png")])


def test_digits_and_guidance_need_a_conditional_model(model_dir, tmp_path):
    with pytest.raises(SystemExit, match="--digit needs a class-conditional video model"):
        main(["sample", "video", "--checkpoint", str(model_dir), "--task", "unconditional", "--digit", "3",
              "-o", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="--guidance needs a class-conditional video model"):
        main(["sample", "video", "--checkpoint", str(model_dir), "--guidance", "2", "-o", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="--digits/--true-digits needs a class-conditional"):
        main(["evaluate", "video", "--checkpoint", str(model_dir), "-n", "2", "--tasks", "unconditional",
              "--digits"])


def test_evaluate_asks_for_digits_and_scores_them(cond_dir, tmp_path, capsys):
    main(["evaluate", "video", "--checkpoint", str(cond_dir), "-n", "3", "--tasks", "unconditional", "predict",
          "--digits", "--true-digits", "--guidance", "2"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    uncond = result["tasks"]["unconditional"]
    acc = uncond["digit_accuracy"]
    assert acc["frames"] == 3 * 4 and "i % 10" in acc["requested"] and "digits_classifier" in acc["judge"]
    assert 0 <= acc["generated"] <= 1 and 0 <= acc["held_out_real"] <= 1
    assert uncond["digit_realism"]["generated"]["frames"] == 3 * 4
    assert 0 <= result["tasks"]["predict"]["digit_accuracy"]["generated"] <= 1
    records = {r["task"]: r for r in result["protocol"]["sampling"]}
    assert (records["unconditional"]["digits"], records["unconditional"]["guidance"]) == ("i % 10", 2.0)
    assert (records["predict"]["digits"], records["predict"]["guidance"]) == ("true", 2.0)
    assert "own digit" in result["protocol"]["digits"]["held_out_tasks"]
    with pytest.raises(SystemExit, match="add --digits"):
        main(["evaluate", "video", "--checkpoint", str(cond_dir), "-n", "2", "--tasks", "unconditional",
              "--guidance", "2"])
    with pytest.raises(SystemExit, match="add --true-digits for predict"):
        main(["evaluate", "video", "--checkpoint", str(cond_dir), "-n", "2", "--tasks", "predict", "--guidance", "2"])
    with pytest.raises(SystemExit, match="--digits applies to --tasks unconditional"):
        main(["evaluate", "video", "--checkpoint", str(cond_dir), "-n", "2", "--tasks", "predict", "--digits"])


def test_missing_default_model_says_how_to_make_one(tmp_path, monkeypatch):
    import dit3d.cli.video as video

    monkeypatch.setattr(video, "DEFAULT_CHECKPOINT", str(tmp_path / "none"))
    with pytest.raises(SystemExit, match="dit3d export video"):
        main(["sample", "video", "-o", str(tmp_path / "x.png")])


def test_export_refuses_guidance_for_an_unconditional_model_and_keeps_a_folders_weights(ckpt, model_dir, tmp_path):
    for source in (ckpt, model_dir):  # a .ckpt, or a folder exported again
        with pytest.raises(SystemExit, match="guidance does not apply to an unconditional video DiT"):
            main(["export", "video", str(source), "-o", str(tmp_path / "bad"), "--guidance", "4"])
    assert not (tmp_path / "bad").exists()
    main(["export", "video", str(model_dir), "-o", str(tmp_path / "again"), "--eta", "0", "--note", "why=test"])
    old, new = VideoGenerator.from_pretrained(model_dir), VideoGenerator.from_pretrained(tmp_path / "again")
    assert all(torch.equal(v, new.net.state_dict()[k]) for k, v in old.net.state_dict().items())
    assert new.sampling == {**old.sampling, "eta": 0.0} and new.data == old.data
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert config["provenance"]["source_provenance"]["wall_time"] == "30:00"
    assert config["provenance"]["why"] == "test"


def test_export_again_takes_a_shipped_name(tmp_path):
    try:
        shipped = VideoGenerator.from_pretrained("video-digits-cpu")
    except ValueError:
        pytest.skip("no shipped video model")
    main(["export", "video", "video-digits-cpu", "-o", str(tmp_path / "mine"), "--steps", "20"])
    mine = VideoGenerator.from_pretrained(tmp_path / "mine")
    assert mine.sampling == {**shipped.sampling, "steps": 20} and mine.guide is not None
    assert all(torch.equal(v, mine.net.state_dict()[k]) for k, v in shipped.net.state_dict().items())
    assert json.loads((tmp_path / "mine" / "config.json").read_text())["provenance"]["source_folder"] == "video-digits-cpu"
