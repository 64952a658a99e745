"""VideoGenerator: Lightning checkpoint -> pretrained folder -> seeded tasks; PNG strips and GIFs."""
import numpy as np
import pytest
import torch

from dit3d.api_video import VideoGenerator, load_video_dit_checkpoint, video_strip, write_gif, write_strip
from dit3d.models import VideoDiTModule
from dit3d.pretrained import PretrainedError
from dit3d.testing import randomize_

DATA = {"num_frames": 4, "image_size": 16, "digit_size": 8, "num_digits": 1, "speed": [1.0, 3.0],
        "test_fraction": 0.2, "seed": 0}


@pytest.fixture
def module() -> VideoDiTModule:
    m = VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=24, num_heads=4,
                       num_timesteps=20, ema_decay=0.9)
    return randomize_(m, std=0.05).eval()


def test_checkpoint_to_pretrained_folder_round_trip(module, tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    gen = VideoGenerator.from_lightning(load_video_dit_checkpoint(ckpt), data=DATA, sampling={"steps": 3})
    a = gen.sample(3, seed=0)
    assert a.shape == (3, 1, 4, 16, 16) and torch.isfinite(a).all() and a.abs().max() <= 1
    folder = gen.save_pretrained(tmp_path / "gen")
    again = VideoGenerator.from_pretrained(folder)
    assert again.data == DATA and again.sampling["steps"] == 3
    assert torch.equal(again.sample(3, seed=0), a)
    # batching does not change the clips (up to float rounding: kernels block by batch size)
    assert torch.allclose(again.sample(3, seed=0, batch_size=2), a, atol=1e-5)
    assert not torch.equal(again.sample(3, seed=1), a)
    with pytest.raises(ValueError, match="guidance does not apply"):
        again.sample(1, guidance=2.0)
    with pytest.raises(PretrainedError, match="neither a pretrained folder"):
        VideoGenerator.from_pretrained(tmp_path / "nowhere")


def test_v_prediction_travels_with_the_weights(tmp_path):
    m = randomize_(VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=24, num_heads=4,
                                  num_timesteps=20, prediction="v", ema_decay=0.9), std=0.05).eval()
    assert m.diffusion_config["prediction"] == "v"
    gen = VideoGenerator.from_lightning(m, data=DATA, sampling={"steps": 3})
    again = VideoGenerator.from_pretrained(gen.save_pretrained(tmp_path / "gen"))
    assert again.diffusion.prediction == "v"
    clips = again.sample(2, seed=0)
    assert torch.equal(clips, gen.sample(2, seed=0))
    # the same weights read as an epsilon predictor give other clips: the choice matters and is kept
    eps = VideoGenerator.from_lightning(m, data=DATA, sampling={"steps": 3})
    eps.diffusion = type(eps.diffusion)(20, "linear", "eps")
    assert not torch.allclose(eps.sample(2, seed=0), clips)


def test_tasks_on_held_out_clips_keep_the_given_frames(module):
    pytest.importorskip("sklearn.datasets")
    gen = VideoGenerator.from_lightning(module, data=DATA, sampling={"steps": 2})
    truth = gen.test_clips(3, start=1)
    assert truth.shape == (3, 1, 4, 16, 16) and torch.equal(truth[0], gen.test_clips(2)[1])
    clips, known = gen.run_task("predict", truth, context_frames=1, seed=0)
    assert known.shape == (3, 1, 4, 16, 16) and gen.frames_of(known)[0].tolist() == [True, False, False, False]
    assert torch.equal(clips[known.expand_as(clips)], truth[known.expand_as(truth)])
    clips2, known2 = gen.run_task("interpolate", n=2, seed=0)
    assert gen.frames_of(known2)[0].tolist() == [True, False, False, True]
    assert torch.equal(clips2[:, :, 0], gen.test_clips(2)[:, :, 0])
    with pytest.raises(ValueError, match="give context clips or n"):
        gen.run_task("predict")


def test_strip_marks_given_frames_and_gif_plays(tmp_path):
    videos = torch.zeros(2, 1, 3, 4, 4)
    known = torch.zeros(2, 1, 3, 4, 4, dtype=torch.bool)
    known[:, :, 0] = True  # frame 0 given
    known[:, :, 1, :2] = True  # half of frame 1 given
    strip = video_strip(videos, known, truth=-torch.ones(2, 1, 3, 4, 4))
    assert strip.shape == (4 * 6 + 2, 3 * 6 + 2, 3)
    assert strip[2, 2].tolist() == [0, 0, 0]  # ground-truth row: -1 is black
    y = 2 + 6  # the first sample row
    assert strip[y - 1, 2].tolist() == [40, 200, 60]  # ring around the given frame
    assert strip[y, 2 + 6].tolist() == [70, 128, 70]  # tinted given half of frame 1 (grey 128)
    assert strip[y + 3, 2 + 6].tolist() == [128, 128, 128]
    png = write_strip(tmp_path / "s.png", videos, known, scale=2)
    gif = write_gif(tmp_path / "s.gif", torch.rand(3, 1, 5, 4, 4) * 2 - 1, scale=2)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (2 * (3 * 6 + 2), 2 * (2 * 6 + 2))
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == (2 * (2 * 5 + 1), 2 * (2 * 5 + 1))
    with pytest.raises(ValueError, match="videos must be"):
        video_strip(np.zeros((2, 3, 4, 4)))
