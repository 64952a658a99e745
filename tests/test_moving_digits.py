"""Moving digits: bouncing at constant velocity, real digits drawn at their positions, a fixed seed,
a train/test split by source digit, the data module."""
import numpy as np
import pytest
import torch

from dit3d.data.moving_digits import MovingDigits, MovingDigitsDataModule, bounce, render_clip

pytest.importorskip("sklearn.datasets")


def test_bounce_reflects_off_both_walls_at_constant_speed():
    path = bounce(np.array([[0.0, 5.0]]), np.array([[3.0, -2.0]]), 8, limit=6.0)[0]  # (F, 2)
    assert path[:, 0].tolist() == [0, 3, 6, 3, 0, 3, 6, 3]
    assert path[:, 1].tolist() == [5, 3, 1, 1, 3, 5, 5, 3]
    assert bounce(np.zeros(2), np.ones(2), 3, limit=0.0).tolist() == [[0, 0]] * 3
    g = np.random.default_rng(0)
    many = bounce(g.uniform(0, 16, (50, 2)), g.uniform(-3, 3, (50, 2)), 40, 16.0)
    assert many.min() >= 0 and many.max() <= 16
    steps = np.abs(np.diff(many, axis=1))
    assert steps.max() <= 4  # at most |v| + 1 rounding step per frame


def test_render_takes_the_maximum_where_digits_overlap():
    ink = [np.full((2, 2), 0.5, np.float32), np.full((2, 2), 0.8, np.float32)]
    pos = np.array([[[0, 0]], [[1, 1]]])  # one frame
    canvas = render_clip(ink, pos, 4)[0]
    assert canvas[0, 0] == 0.5 and canvas[1, 1] == 0.8 and canvas[2, 2] == 0.8 and canvas[3, 3] == 0


def test_clips_show_real_digits_where_they_say_and_are_seeded():
    ds = MovingDigits("train", num_sequences=20, num_frames=8, digit_size=16)
    item = ds[3]
    video, pos, digit = item["video"], item["position"][0], int(item["digit"][0])
    assert video.shape == (1, 8, 32, 32) and video.min() >= -1 and video.max() <= 1
    ink = (video[0] + 1) / 2
    for f in range(8):
        r, c = pos[f].tolist()
        assert torch.allclose(ink[f, r:r + 16, c:c + 16], torch.from_numpy(ds.ink[digit]), atol=1e-6)
        outside = ink[f].clone()
        outside[r:r + 16, c:c + 16] = 0
        assert outside.abs().max() == 0
    velocity = np.diff(pos.numpy(), axis=0)
    assert np.abs(velocity).max() <= 4
    assert int(item["label"][0]) == int(ds.labels[digit])
    again = MovingDigits("train", num_sequences=20, num_frames=8, digit_size=16)
    assert torch.equal(again[3]["video"], video)  # a pure function of (seed, split, index)
    assert not torch.equal(MovingDigits("train", 20, 8, seed=1)[3]["video"], video)


def test_train_and_test_clips_use_disjoint_source_digits():
    train = MovingDigits("train", num_sequences=300, num_frames=2)
    test = MovingDigits("test", num_sequences=300, num_frames=2)
    assert len(train.pool) == 1438 and len(test.pool) == 359
    seen_train = {int(train[i]["digit"][0]) for i in range(300)}
    seen_test = {int(test[i]["digit"][0]) for i in range(300)}
    assert seen_train <= set(train.pool.tolist()) and seen_test <= set(test.pool.tolist())
    assert not seen_train & seen_test
    two = MovingDigits("test", num_sequences=2, num_frames=4, num_digits=2, digit_size=12)[0]
    assert two["label"].shape == (2,) and two["position"].shape == (2, 4, 2)


def test_bad_settings_say_what_to_do():
    with pytest.raises(ValueError, match="image_size must be an int >= digit_size"):
        MovingDigits("train", 10, image_size=12, digit_size=16)
    with pytest.raises(ValueError, match="v_min <= v_max"):
        MovingDigits("train", 10, speed=(3.0, 1.0))
    with pytest.raises(ValueError, match="split must be one of"):
        MovingDigits("val")
    with pytest.raises(IndexError):
        MovingDigits("test", 2)[2]


def test_data_module_batches_and_shuffles_by_epoch():
    dm = MovingDigitsDataModule(batch_size=4, num_frames=4, num_train=12, num_test=6, digit_size=12)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 1, 4, 32, 32) and batch["label"].shape == (4, 1)
    assert dm.video_shape == (1, 4, 32, 32)
    val = [b["video"] for b in dm.val_dataloader()]
    assert [v.shape[0] for v in val] == [4, 2]
    assert torch.equal(val[0][0], dm.datasets["test"][0]["video"])  # in order
    loader = dm.train_dataloader()
    e0 = [b["digit"] for b in loader]
    e1 = [b["digit"] for b in loader]
    assert not all(torch.equal(a, b) for a, b in zip(e0, e1))
