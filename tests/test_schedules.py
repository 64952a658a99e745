"""Beta schedules: endpoints, monotonicity, clipping and name lookup."""
import math

import pytest
import torch

from dit3d.objectives import cosine_beta_schedule, get_beta_schedule, linear_beta_schedule


def test_linear_endpoints_and_spacing():
    betas = linear_beta_schedule(1000)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    # equal increments of (0.02 - 1e-4) / 999
    torch.testing.assert_close(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_linear_custom_range():
    betas = linear_beta_schedule(5, beta_start=0.1, beta_end=0.5)
    torch.testing.assert_close(betas, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64))


def test_cosine_matches_closed_form_and_is_monotone():
    T, s = 50, 0.008
    betas = cosine_beta_schedule(T, s=s)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert (betas.diff() > 0).all()
    assert (betas <= 0.999).all() and (betas > 0).all()
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    # away from the clip, alpha_bar_t = f(t + 1) / f(0)
    abar = torch.cumprod(1 - betas, 0)
    for t in (0, 10, 25, 40):
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-12)


def test_cosine_clips_at_max_beta():
    betas = cosine_beta_schedule(20, max_beta=0.5)
    assert betas.max().item() == 0.5
    assert (betas <= 0.5).all()


def test_get_beta_schedule_by_name():
    torch.testing.assert_close(get_beta_schedule("linear", 10, beta_end=0.1),
                               linear_beta_schedule(10, beta_end=0.1))
    torch.testing.assert_close(get_beta_schedule("cosine", 10), cosine_beta_schedule(10))


def test_unknown_name_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown beta schedule 'quadratic'"):
        get_beta_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="num_timesteps"):
        linear_beta_schedule(0)
    with pytest.raises(ValueError, match="beta_start"):
        linear_beta_schedule(10, beta_start=0.5, beta_end=0.1)
    with pytest.raises(ValueError, match="max_beta"):
        cosine_beta_schedule(10, max_beta=1.0)
