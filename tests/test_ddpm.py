"""GaussianDiffusion against closed forms: forward moments, posterior, parameterisations, samplers."""
import math

import numpy as np
import pytest
import torch

from dit3d.objectives import GaussianDiffusion, cosine_beta_schedule, linear_beta_schedule

MU, S = 1.5, 0.5  # Gaussian "data distribution" N(MU, S^2) for the oracle tests


def _abar_list(betas: torch.Tensor) -> list[float]:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), computed by hand in float64 python."""
    out, prod = [], 1.0
    for beta in betas.tolist():
        prod *= 1.0 - beta
        out.append(prod)
    return out


def _oracle(diffusion: GaussianDiffusion, abar: list[float]):
    """Exact network for data N(MU, S^2): returns E[target | x_t] for the diffusion's prediction.

    With x_t = a x0 + b eps, x_t ~ N(a MU, a^2 S^2 + b^2) and (x0, eps, x_t) jointly Gaussian, so
    E[eps | x_t] = b / (a^2 S^2 + b^2) (x_t - a MU),  E[x0 | x_t] = MU + a S^2 / (a^2 S^2 + b^2) (x_t - a MU).
    """
    table = torch.tensor(abar, dtype=torch.float64)

    def model(x_t, t, **kwargs):
        ab = table[t].to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        a, b = ab.sqrt(), (1 - ab).sqrt()
        var = a ** 2 * S ** 2 + b ** 2
        eps = b / var * (x_t - a * MU)
        x0 = MU + a * S ** 2 / var * (x_t - a * MU)
        return {"eps": eps, "x0": x0, "v": a * eps - b * x0}[diffusion.prediction]

    return model


# --------------------------------------------------------------------------- forward process
def test_q_mean_variance_closed_form_and_empirical_moments():
    diffusion = GaussianDiffusion(num_timesteps=100)
    abar = _abar_list(linear_beta_schedule(100))
    n, step = 200_000, 37
    x0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64).expand(n, 3)
    t = torch.full((n,), step, dtype=torch.long)
    mean, var = diffusion.q_mean_variance(x0[:2], t[:2])
    torch.testing.assert_close(mean, math.sqrt(abar[step]) * x0[:2])
    torch.testing.assert_close(var, torch.full((2, 3), 1 - abar[step], dtype=torch.float64))

    x_t = diffusion.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    se_mean = math.sqrt((1 - abar[step]) / n)
    assert (x_t.mean(0) - math.sqrt(abar[step]) * x0[0]).abs().max() < 4 * se_mean
    se_var = (1 - abar[step]) * math.sqrt(2 / n)
    assert (x_t.var(0) - (1 - abar[step])).abs().max() < 4 * se_var


def test_q_sample_with_given_noise_is_deterministic():
    diffusion = GaussianDiffusion(num_timesteps=10, schedule="cosine")
    abar = _abar_list(cosine_beta_schedule(10))
    x0, noise = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([0, 3, 6, 9])
    a = torch.tensor([abar[i] for i in t.tolist()], dtype=torch.float64)[:, None]
    torch.testing.assert_close(diffusion.q_sample(x0, t, noise), a.sqrt() * x0 + (1 - a).sqrt() * noise)


# ---------------------------------------------------------------------------- posterior
def test_posterior_matches_explicit_formulas():
    T = 50
    diffusion = GaussianDiffusion(num_timesteps=T, schedule="cosine")
    betas = cosine_beta_schedule(T).tolist()
    abar = _abar_list(cosine_beta_schedule(T))
    x0, x_t = torch.randn(T, 3, dtype=torch.float64), torch.randn(T, 3, dtype=torch.float64)
    t = torch.arange(T)
    mean, var, log_var = diffusion.q_posterior_mean_variance(x0, x_t, t)
    for i in range(T):
        prev = abar[i - 1] if i > 0 else 1.0
        c0 = betas[i] * math.sqrt(prev) / (1 - abar[i])
        ct = (1 - prev) * math.sqrt(1 - betas[i]) / (1 - abar[i])
        beta_tilde = (1 - prev) / (1 - abar[i]) * betas[i]
        torch.testing.assert_close(mean[i], c0 * x0[i] + ct * x_t[i])
        assert var[i].tolist() == pytest.approx([beta_tilde] * 3, rel=1e-12, abs=1e-15)
        clipped = beta_tilde if i > 0 else (1 - abar[0]) / (1 - abar[1]) * betas[1]
        assert log_var[i].tolist() == pytest.approx([math.log(clipped)] * 3, rel=1e-12)


@pytest.mark.parametrize("step", [1, 5, 18])
def test_posterior_matches_bayes_rule_numerically(step):
    """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0), integrated on a grid."""
    T = 20
    diffusion = GaussianDiffusion(num_timesteps=T, beta_start=0.01, beta_end=0.2)
    betas = linear_beta_schedule(T, 0.01, 0.2).tolist()
    abar = _abar_list(linear_beta_schedule(T, 0.01, 0.2))
    x0_val, xt_val = 0.7, -0.3
    grid = torch.linspace(-6, 6, 200_001, dtype=torch.float64)
    log_lik = -(xt_val - math.sqrt(1 - betas[step]) * grid) ** 2 / (2 * betas[step])
    log_prior = -(grid - math.sqrt(abar[step - 1]) * x0_val) ** 2 / (2 * (1 - abar[step - 1]))
    w = torch.exp(log_lik + log_prior - (log_lik + log_prior).max())
    w = w / w.sum()
    num_mean = (w * grid).sum().item()
    num_var = (w * (grid - num_mean) ** 2).sum().item()
    t = torch.tensor([step])
    mean, var, _ = diffusion.q_posterior_mean_variance(torch.tensor([[x0_val]], dtype=torch.float64),
                                                       torch.tensor([[xt_val]], dtype=torch.float64), t)
    assert mean.item() == pytest.approx(num_mean, abs=1e-8)
    assert var.item() == pytest.approx(num_var, rel=1e-6)


# ------------------------------------------------------------------------ parameterisations
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_predict_x0_and_eps_invert_training_target(prediction):
    diffusion = GaussianDiffusion(num_timesteps=100, prediction=prediction)
    x0, noise = torch.randn(5, 4, 3, dtype=torch.float64), torch.randn(5, 4, 3, dtype=torch.float64)
    t = torch.tensor([0, 10, 50, 90, 99])
    x_t = diffusion.q_sample(x0, t, noise)
    target = diffusion.training_target(x0, noise, t)
    torch.testing.assert_close(diffusion.predict_x0(x_t, t, target), x0)
    torch.testing.assert_close(diffusion.predict_eps(x_t, t, target), noise)


def test_v_target_closed_form():
    diffusion = GaussianDiffusion(num_timesteps=10, prediction="v")
    abar = _abar_list(linear_beta_schedule(10))
    x0, noise, t = torch.ones(1, 2, dtype=torch.float64), torch.full((1, 2), 2.0, dtype=torch.float64), torch.tensor([4])
    expected = math.sqrt(abar[4]) * 2.0 - math.sqrt(1 - abar[4]) * 1.0
    torch.testing.assert_close(diffusion.training_target(x0, noise, t), torch.full((1, 2), expected, dtype=torch.float64))


# --------------------------------------------------------------------------------- samplers
def test_ddim_full_steps_eta0_matches_hand_written_ddim():
    T = 30
    diffusion = GaussianDiffusion(num_timesteps=T, schedule="cosine")
    abar = _abar_list(cosine_beta_schedule(T))
    model = lambda x, t, **kw: torch.tanh(x) * 0.3 + 0.01 * t.to(x.dtype)[:, None]  # noqa: E731
    noise = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = noise.clone()
    for i in range(T - 1, -1, -1):  # Song et al. 2021, eq. 12 with sigma = 0
        eps = model(x, torch.full((6,), i))
        prev = abar[i - 1] if i > 0 else 1.0
        x0 = (x - math.sqrt(1 - abar[i]) * eps) / math.sqrt(abar[i])
        x = math.sqrt(prev) * x0 + math.sqrt(1 - prev) * eps
    out = diffusion.ddim_sample_loop(model, (6, 2), steps=T, eta=0.0, noise=noise, progress=False)
    torch.testing.assert_close(out, x, rtol=1e-10, atol=1e-10)


def test_ddim_eta1_full_steps_equals_ancestral_sampler():
    """DDPM is DDIM with eta=1 at every step (Song et al. 2021, Sec. 4.1); same draws, same result."""
    T = 25
    diffusion = GaussianDiffusion(num_timesteps=T, beta_start=1e-3, beta_end=0.3)
    model = lambda x, t, **kw: torch.sin(x) * 0.5  # noqa: E731
    noise = torch.randn(4, 3, dtype=torch.float64)
    a = diffusion.p_sample_loop(model, (4, 3), noise=noise, generator=torch.Generator().manual_seed(3), progress=False)
    b = diffusion.ddim_sample_loop(model, (4, 3), steps=T, eta=1.0, noise=noise,
                                   generator=torch.Generator().manual_seed(3), progress=False)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_timesteps_evenly_spaced_and_distinct():
    diffusion = GaussianDiffusion(num_timesteps=100)
    assert diffusion.ddim_timesteps(5).tolist() == [99, 74, 50, 25, 0]
    assert diffusion.ddim_timesteps(100).tolist() == list(range(99, -1, -1))
    assert diffusion.ddim_timesteps(1).tolist() == [99]
    for steps in (3, 7, 33, 64, 99):
        ts = diffusion.ddim_timesteps(steps)
        assert len(set(ts.tolist())) == steps and ts[0] == 99 and ts[-1] == 0


def _exact_ancestral_law(betas: list[float], abar: list[float]) -> tuple[float, float]:
    """Mean and variance of the ancestral sampler's output under the oracle (a linear-Gaussian chain)."""
    mean, var = 0.0, 1.0
    for i in range(len(betas) - 1, -1, -1):
        prev = abar[i - 1] if i > 0 else 1.0
        a = math.sqrt(abar[i])
        k = a * S ** 2 / (abar[i] * S ** 2 + 1 - abar[i])  # E[x0|x_t] = MU + k (x_t - a MU)
        c0 = betas[i] * math.sqrt(prev) / (1 - abar[i])
        ct = (1 - prev) * math.sqrt(1 - betas[i]) / (1 - abar[i])
        gain = c0 * k + ct
        mean = gain * mean + c0 * MU * (1 - k * a)
        var = gain ** 2 * var + ((1 - prev) / (1 - abar[i]) * betas[i] if i > 0 else 0.0)
    return mean, var


def test_ancestral_sampler_with_oracle_reproduces_gaussian_data():
    T, n = 200, 40_000
    diffusion = GaussianDiffusion(num_timesteps=T, schedule="cosine")
    betas = cosine_beta_schedule(T)
    abar = _abar_list(betas)
    samples = diffusion.p_sample_loop(_oracle(diffusion, abar), (n, 1), generator=torch.Generator().manual_seed(0),
                                      progress=False)
    law_mean, law_var = _exact_ancestral_law(betas.tolist(), abar)
    emp_mean, emp_var = samples.mean().item(), samples.var().item()
    # The sampler follows its own exact Gaussian law to sampling error (4 standard errors) ...
    assert abs(emp_mean - law_mean) < 4 * math.sqrt(law_var / n)
    var_se = law_var * math.sqrt(2 / n)
    assert abs(emp_var - law_var) < 4 * var_se
    # ... and that law is the data distribution up to the known bias of the fixed-small variance
    # (beta_tilde ignores Var[x0|x_t]): 3.7 % of the variance at T=200, shrinking as T grows.
    assert abs(law_mean - MU) < 1e-6
    assert abs(law_var - S ** 2) / S ** 2 < 0.04
    assert abs(emp_mean - MU) < 4 * math.sqrt(law_var / n)
    assert abs(emp_var - S ** 2) < 0.04 * S ** 2 + 4 * var_se


def _ddim_oracle_affine_map(abar: list[float], ts: list[int]) -> tuple[float, float]:
    """With a Gaussian oracle each DDIM step is affine in x; compose the steps by hand: x_out = gain x_T + shift."""
    gain, shift = 1.0, 0.0
    for j, i in enumerate(ts):
        prev = abar[ts[j + 1]] if j + 1 < len(ts) else 1.0
        a, b = math.sqrt(abar[i]), math.sqrt(1 - abar[i])
        k = a * S ** 2 / (abar[i] * S ** 2 + b ** 2)
        # x0_hat = MU + k (x - a MU); eps_hat = (x - a x0_hat) / b; x' = sqrt(prev) x0_hat + sqrt(1-prev) eps_hat
        g0, s0 = k, MU - k * a * MU
        ge, se = (1 - a * g0) / b, -a * s0 / b
        g = math.sqrt(prev) * g0 + math.sqrt(1 - prev) * ge
        c = math.sqrt(prev) * s0 + math.sqrt(1 - prev) * se
        gain, shift = g * gain, g * shift + c
    return gain, shift


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddim_with_oracle_is_the_composed_affine_map(prediction):
    T, steps = 200, 20
    diffusion = GaussianDiffusion(num_timesteps=T, schedule="cosine", prediction=prediction)
    abar = _abar_list(cosine_beta_schedule(T))
    noise = torch.randn(2000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = diffusion.ddim_sample_loop(_oracle(diffusion, abar), (2000, 1), steps=steps, noise=noise, progress=False)
    ts = [round(T - 1 - i * (T - 1) / (steps - 1)) for i in range(steps)]
    gain, shift = _ddim_oracle_affine_map(abar, ts)
    torch.testing.assert_close(out, gain * noise + shift, rtol=1e-8, atol=1e-8)


def test_ddim_with_oracle_converges_to_data_at_first_order():
    """The deterministic DDIM map sends N(0, 1) to N(shift, gain^2); gain -> S with error O(1/steps)."""
    T = 200
    diffusion = GaussianDiffusion(num_timesteps=T, schedule="cosine")
    model = _oracle(diffusion, _abar_list(cosine_beta_schedule(T)))
    noise = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    errors = []
    for steps in (25, 50, 100, 200):
        out = diffusion.ddim_sample_loop(model, (2, 1), steps=steps, noise=noise, progress=False)
        gain, shift = (out[1] - out[0]).item() / 2, out.mean().item()
        assert abs(shift - MU) < 1e-3
        errors.append(abs(gain - S))
    assert errors[-1] / S < 0.01
    for coarse, fine in zip(errors, errors[1:]):
        assert 1.7 < coarse / fine < 2.3


# ----------------------------------------------------------------------------------- masks
def _ragged():
    x0 = torch.randn(3, 4, 2)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False], [True, False, False, False]])
    return x0, mask


def test_masked_loss_ignores_padding_and_matches_closed_form():
    x0, mask = _ragged()
    seen = {}

    def model(x_t, t, mask=None):
        seen.update(x_t=x_t, mask=mask)
        return torch.zeros_like(x_t)

    diffusion = GaussianDiffusion(num_timesteps=50, prediction="x0")
    loss = diffusion.training_loss(model, x0, mask=mask, generator=torch.Generator().manual_seed(0))
    # Zero prediction of x0: loss = sum of x0^2 over real elements / number of real elements (7 tokens x 2).
    assert loss.item() == pytest.approx((x0[mask] ** 2).sum().item() / 14, rel=1e-6)
    assert seen["mask"] is mask or torch.equal(seen["mask"], mask)
    assert (seen["x_t"][~mask] == 0).all()  # padding carries neither data nor noise

    changed = x0.clone()
    changed[~mask] = 1e3
    for prediction in ("eps", "v"):
        diffusion = GaussianDiffusion(num_timesteps=50, prediction=prediction)
        net = lambda x_t, t, mask=None: 0.5 * x_t  # noqa: E731
        a = diffusion.training_loss(net, x0, mask=mask, generator=torch.Generator().manual_seed(1))
        b = diffusion.training_loss(net, changed, mask=mask, generator=torch.Generator().manual_seed(1))
        assert a.item() == b.item()


def test_training_loss_with_fixed_t_and_generator_is_repeatable():
    diffusion = GaussianDiffusion(num_timesteps=50)
    net = lambda x_t, t: x_t * 0.1  # noqa: E731
    x0 = torch.randn(4, 3)
    a = diffusion.training_loss(net, x0, generator=torch.Generator().manual_seed(5), t=torch.tensor([1, 2, 3, 4]))
    b = diffusion.training_loss(net, x0, generator=torch.Generator().manual_seed(5), t=torch.tensor([1, 2, 3, 4]))
    assert a.item() == b.item() and a.dim() == 0


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samplers_zero_padding(sampler):
    _, mask = _ragged()
    diffusion = GaussianDiffusion(num_timesteps=20)
    model = lambda x, t, mask=None: torch.ones_like(x)  # noqa: E731 (nonzero output everywhere)
    run = diffusion.p_sample_loop if sampler == "ancestral" else diffusion.ddim_sample_loop
    kwargs = {} if sampler == "ancestral" else {"steps": 7}
    out = run(model, (3, 4, 2), mask=mask, **kwargs, generator=torch.Generator().manual_seed(0), progress=False)
    assert (out[~mask] == 0).all() and (out[mask] != 0).all()


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_raise_clear_errors():
    diffusion = GaussianDiffusion(num_timesteps=10)
    net = lambda x_t, t, **kw: x_t  # noqa: E731
    x0 = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="unknown prediction 'score'"):
        GaussianDiffusion(prediction="score")
    with pytest.raises(ValueError, match="unknown beta schedule"):
        GaussianDiffusion(schedule="sigmoid")
    with pytest.raises(ValueError, match="prefix"):
        diffusion.training_loss(net, x0, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="torch.bool"):
        diffusion.training_loss(net, x0, mask=torch.ones(2, 3))
    bad = x0.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x0 contains NaN"):
        diffusion.training_loss(net, bad)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\]"):
        diffusion.q_sample(x0, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="integer timesteps"):
        diffusion.q_sample(x0, torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        diffusion.q_sample(x0, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="x_t's shape"):
        diffusion.training_loss(lambda x, t: x[:, 0], x0)
    with pytest.raises(ValueError, match="no True"):
        diffusion.training_loss(net, x0, mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="steps must be an int in"):
        diffusion.ddim_sample_loop(net, (2, 3), steps=11, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive int, got 2.0"):
        diffusion.ddim_sample_loop(net, (2, 3), steps=2.0, progress=False)
    assert diffusion.ddim_timesteps(np.int64(3)).tolist() == diffusion.ddim_timesteps(3).tolist()  # numpy ints too
    with pytest.raises(ValueError, match="eta"):
        diffusion.ddim_sample_loop(net, (2, 3), eta=-1.0, progress=False)
    with pytest.raises(ValueError, match="noise shape"):
        diffusion.p_sample_loop(net, (2, 3), noise=torch.zeros(2, 4), progress=False)
