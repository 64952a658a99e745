"""Video metrics: MSE/PSNR on generated pixels only, on the [0, 1] scale; the copy baseline."""
import math

import numpy as np
import pytest

from dit3d.metrics.video import PSNR_CAP_DB, copy_baseline, masked_mse_psnr


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
