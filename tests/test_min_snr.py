"""Min-SNR-gamma loss weighting (Hang et al. 2023) of GaussianDiffusion, known_training_loss
and VideoDiTModule: hand-computed weights, and the defining property that every
parameterisation's weighted loss is min(SNR, gamma) times the squared error of its x0 estimate."""
import pytest
import torch

from dit3d.models import VideoDiTModule
from dit3d.objectives import GaussianDiffusion, known_training_loss


def test_weights_by_hand():
    d = GaussianDiffusion(num_timesteps=10, beta_start=0.05, beta_end=0.5)
    abar, prod = [], 1.0
    for beta in torch.linspace(0.05, 0.5, 10, dtype=torch.float64).tolist():
        prod *= 1.0 - beta
        abar.append(prod)
    t = torch.arange(10)
    snr = torch.tensor([a / (1 - a) for a in abar], dtype=torch.float64)
    torch.testing.assert_close(d.snr(t), snr)
    assert snr[0] > 2.0 > snr[-1]  # gamma = 2 clips the first steps only
    clipped = snr.clamp(max=2.0)
    for prediction, expected in (("eps", clipped / snr), ("x0", clipped), ("v", clipped / (snr + 1))):
        d.prediction = prediction
        torch.testing.assert_close(d.min_snr_weight(t, 2.0), expected)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_weighted_loss_is_min_snr_times_x0_error(prediction):
    """Whatever the network outputs, the weighted loss equals the mean over samples of
    min(SNR_t, gamma) * ||x0_hat - x0||^2 with x0_hat the estimate that output implies."""
    d = GaussianDiffusion(num_timesteps=50, prediction=prediction)
    x0 = torch.randn(6, 3, 4, dtype=torch.float64)
    t = torch.tensor([0, 3, 10, 25, 40, 49])
    seen = {}

    def model(x_t, t):
        seen["x_t"] = x_t
        seen["out"] = torch.sin(3 * x_t) + 0.1  # any output
        return seen["out"]

    loss = d.training_loss(model, x0, t=t, min_snr_gamma=5.0, generator=torch.Generator().manual_seed(0))
    x0_hat = d.predict_x0(seen["x_t"], t, seen["out"])
    per_sample = d.snr(t).clamp(max=5.0) * ((x0_hat - x0) ** 2).mean((1, 2))
    torch.testing.assert_close(loss, per_sample.mean())
    unweighted = d.training_loss(model, x0, t=t, generator=torch.Generator().manual_seed(0))
    assert not torch.isclose(loss, unweighted)


def test_known_loss_with_nothing_known_equals_the_plain_weighted_loss():
    d = GaussianDiffusion(num_timesteps=100, prediction="v")
    x0 = torch.randn(4, 2, 5)
    model = lambda x_t, t: 0.5 * x_t  # noqa: E731
    known = torch.zeros(4, 1, 5, dtype=torch.bool)
    for gamma in (None, 5.0):
        a = known_training_loss(d, model, x0, known, torch.Generator().manual_seed(1), min_snr_gamma=gamma)
        b = d.training_loss(model, x0, generator=torch.Generator().manual_seed(1), min_snr_gamma=gamma)
        torch.testing.assert_close(a, b)


def test_bad_gamma_is_refused():
    d = GaussianDiffusion(num_timesteps=10)
    with pytest.raises(ValueError, match="min_snr_gamma must be > 0"):
        d.training_loss(lambda x, t: x, torch.zeros(2, 3), min_snr_gamma=0.0)
    with pytest.raises(ValueError, match="min_snr_gamma must be > 0"):
        VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, num_timesteps=10, min_snr_gamma=-1.0)


def test_video_module_weights_training_but_not_validation():
    torch.manual_seed(0)
    kwargs = dict(patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=24, num_heads=4,
                  num_timesteps=100, prediction="v")
    plain, weighted = VideoDiTModule(**kwargs), VideoDiTModule(**kwargs, min_snr_gamma=5.0)
    weighted.load_state_dict(plain.state_dict())
    video = torch.rand(3, 1, 4, 16, 16) * 2 - 1
    losses = {}
    for name, m in (("plain", plain), ("weighted", weighted)):
        m.log = lambda *a, **k: losses.setdefault(name + a[0], a[1])
        torch.manual_seed(1)
        losses[name] = m.training_step({"video": video}, 0)
        m.validation_step({"video": video}, 0)
    assert not torch.isclose(losses["plain"], losses["weighted"])
    torch.testing.assert_close(losses["plainval/loss"], losses["weightedval/loss"])
