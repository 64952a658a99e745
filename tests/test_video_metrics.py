"""Video metrics: MSE/PSNR on generated pixels only, on the [0, 1] scale; the copy baseline; digit accuracy."""
import math

import numpy as np
import pytest

from dit3d.metrics.video import PSNR_CAP_DB, copy_baseline, digit_accuracy, digit_crops, digit_realism, masked_mse_psnr


def test_mse_and_psnr_count_generated_pixels_only():
    truth = -np.ones((2, 1, 3, 2, 2))
    pred = truth.copy()
    pred[:, :, 0] = 1.0  # a given frame, copied wrong on purpose: must not count
    pred[0, 0, 2, 0, 0] = 0.0  # one of 8 generated pixels off by 0.5 on the [0, 1] scale
    generated = np.array([False, True, True]).reshape(1, 1, 3, 1, 1)
    r = masked_mse_psnr(pred, truth, generated)
    assert math.isclose(r["mse"], (0.25 / 8 + 0) / 2)
    assert math.isclose(r["psnr"], (10 * math.log10(8 / 0.25) + PSNR_CAP_DB) / 2)  # an exact clip is capped
    assert math.isnan(r["mse_per_frame"][0]) and r["mse_per_frame"][1] == 0
    assert math.isclose(r["mse_per_frame"][2], 0.25 / 8) and r["clips"] == 2
    with pytest.raises(ValueError, match="no generated pixel"):
        masked_mse_psnr(pred, truth, np.zeros((2, 1, 3, 1, 1), bool))
    with pytest.raises(ValueError, match="same shape"):
        masked_mse_psnr(pred[:1], truth, generated)


def test_copy_baseline_uses_the_nearest_given_frame():
    truth = np.arange(5.0).reshape(1, 1, 5, 1, 1).repeat(2, axis=0)
    given = np.array([[True, False, False, False, True], [False, False, False, False, False]])
    out = copy_baseline(truth, given)
    assert out[0, 0, :, 0, 0].tolist() == [0, 0, 0, 4, 4]  # ties go to the earlier frame
    assert (out[1] == -1).all()  # nothing given: a blank canvas
    with pytest.raises(ValueError, match="given_frames must be"):
        copy_baseline(truth, given[:, :4])


def test_digit_crops_centre_on_the_ink_and_stay_on_the_canvas():
    clips = -np.ones((1, 1, 3, 10, 10))
    clips[0, 0, 0, 4:6, 4:6] = 1.0  # centroid (4.5, 4.5): the 4x4 window from (3, 3)
    clips[0, 0, 1, 0, 9] = 1.0  # corner ink: the window is clamped to the canvas
    crops = digit_crops(clips, size=4)
    assert crops.shape == (1, 3, 1, 4, 4)
    assert np.argwhere(crops[0, 0, 0] > 0).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert np.argwhere(crops[0, 1, 0] > 0).tolist() == [[0, 3]]
    assert (crops[0, 2] == -1).all()  # no ink: the central window of a blank frame
    with pytest.raises(ValueError, match="grey clips"):
        digit_crops(np.zeros((1, 3, 2, 8, 8)))
    clips[0, 0, 2, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        digit_crops(clips, size=4)


def test_digit_accuracy_reads_real_clips_and_not_blank_or_mislabelled_ones():
    pytest.importorskip("sklearn.datasets")
    import torch

    from dit3d.data.moving_digits import MovingDigits

    ds = MovingDigits("test", 64, num_frames=4)
    clips = ds.videos(range(64))
    labels = torch.stack([ds[i]["label"][0] for i in range(64)])
    every = np.ones((64, 4), dtype=bool)
    assert digit_accuracy(clips, labels, every) > 0.9  # held-out digits, 0.976 on 256 clips x 8 frames
    assert digit_accuracy(clips, labels.roll(1), every) < 0.3
    assert digit_accuracy(-torch.ones_like(clips), labels, every) < 0.3
    only_first = np.zeros((64, 4), dtype=bool)
    only_first[:, 0] = True
    broken = clips.clone()
    broken[:, :, 1:] = -1.0  # blank all but the first frame: scoring only frame 0 does not see it
    assert digit_accuracy(broken, labels, only_first) == digit_accuracy(clips, labels, only_first)
    with pytest.raises(ValueError, match="no frame chosen"):
        digit_accuracy(clips, labels, ~every)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        digit_accuracy(clips, labels + 10, every)
    with pytest.raises(ValueError, match="integers, one per image"):
        digit_accuracy(clips, labels.float(), every)
    with pytest.raises(ValueError, match=r"frames must be \(n, F\)"):
        digit_accuracy(clips, labels, every[:, :2])


def test_digit_realism_separates_real_clips_from_blurred_blobs():
    pytest.importorskip("sklearn.datasets")
    import torch.nn.functional as F

    from dit3d.data.moving_digits import MovingDigits

    clips = MovingDigits("test", 96, num_frames=4).videos(range(96))  # (96, 1, 4, 32, 32)
    real = digit_realism(clips[:48], clips[48:])
    # blobs: the same clips blurred by a 7x7 box filter, ink and motion kept, strokes gone
    frames = clips.transpose(1, 2).reshape(-1, 1, 32, 32)
    blurred = F.avg_pool2d(frames, 7, stride=1, padding=3, count_include_pad=False)
    blobs = digit_realism(blurred.reshape(96, 4, 1, 32, 32).transpose(1, 2)[:48], clips[48:])
    assert real["frames"] == blobs["frames"] == 48 * 4
    assert real["label_consistency"] > 0.9 and real["confident_fraction"] > 0.8
    assert blobs["frechet_digit_distance"] > 3 * real["frechet_digit_distance"]
    assert blobs["confident_fraction"] < real["confident_fraction"]
    with pytest.raises(ValueError, match="at least 2 frames"):
        digit_realism(clips[:1, :, :1], clips[48:])
