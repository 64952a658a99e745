r"""FlowMatching against closed forms.

Gaussian-to-Gaussian path: x0 ~ N(0, I), x1 ~ N(M, S^2 I), x_t = (1-t) x0 + t x1. Then
x_t ~ N(t M, sigma_t^2) with sigma_t^2 = (1-t)^2 + t^2 S^2, u = x1 - x0 has mean M and
Cov(u, x_t) = t S^2 - (1-t), so the marginal velocity is the regression
    v(x, t) = E[u | x_t = x] = M + (t S^2 - (1-t)) / sigma_t^2 * (x - t M).
Since (t S^2 - (1-t)) / sigma_t^2 = sigma_t' / sigma_t, the ODE is solved by
x(t) = t M + sigma_t x(0): the exact flow maps each noise x(0) to M + S x(0).
"""
import math

import pytest
import torch

from dit3d.objectives import FlowMatching

M, S = 2.0, 0.5


def _velocity(x, t):
    t = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return M + (t * S ** 2 - (1 - t)) / ((1 - t) ** 2 + t ** 2 * S ** 2) * (x - t * M)


def _oracle(prediction):
    def model(x, t, **kwargs):
        v = _velocity(x, t)
        return v if prediction == "velocity" else x + (1 - t.to(x.dtype)).reshape(-1, 1) * v
    return model


def test_interpolation_endpoints_and_midpoint():
    fm = FlowMatching()
    x0, x1 = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    out = fm.interpolate(x0, x1, torch.tensor([0.0, 1.0, 0.25]))
    torch.testing.assert_close(out[0], x0[0])
    torch.testing.assert_close(out[1], x1[1])
    torch.testing.assert_close(out[2], 0.75 * x0[2] + 0.25 * x1[2])


def test_closed_form_velocity_matches_monte_carlo_regression():
    """Check the test's own v(x, t): regress u = x1 - x0 on x_t from samples."""
    g = torch.Generator().manual_seed(0)
    n, t = 400_000, 0.3
    x0 = torch.randn(n, dtype=torch.float64, generator=g)
    x1 = M + S * torch.randn(n, dtype=torch.float64, generator=g)
    xt, u = (1 - t) * x0 + t * x1, x1 - x0
    slope = ((xt - xt.mean()) * (u - u.mean())).mean() / xt.var()
    intercept = u.mean() - slope * xt.mean()
    probe = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64)
    expected = _velocity(probe, torch.full((3,), t))[:, 0]
    torch.testing.assert_close(intercept + slope * probe[:, 0], expected, atol=0.01, rtol=0)


def _flow_error(solver, steps, prediction="velocity"):
    """Largest error of the integrated flow against the exact map x0 -> M + S x0, over |x0| <= 3."""
    fm = FlowMatching(prediction=prediction)
    x0 = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]
    out = fm.sample(_oracle(prediction), x0=x0, steps=steps, solver=solver, progress=False)
    return (out - (M + S * x0)).abs().max().item()


def test_euler_with_many_steps_lands_on_target_distribution():
    fm = FlowMatching()
    x0 = torch.randn(20_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = fm.sample(_oracle("velocity"), x0=x0, steps=500, solver="euler", progress=False)
    # Euler on an affine field is an affine map out = gain * x0 + shift; it should be the exact one.
    gain = ((out - out.mean()) * (x0 - x0.mean())).sum() / ((x0 - x0.mean()) ** 2).sum()
    shift = out.mean() - gain * x0.mean()
    assert abs(gain.item() / S - 1) < 0.01 and abs(shift.item() - M) < 0.01
    torch.testing.assert_close(out, gain * x0 + shift)
    assert abs(out.mean().item() - M) < 4 * S / math.sqrt(20_000)
    assert abs(out.std().item() / S - 1) < 0.03
    assert _flow_error("euler", 500) < _flow_error("euler", 250) / 1.8  # first order


def test_heun_is_second_order_and_beats_euler():
    euler, heun = [_flow_error("euler", n) for n in (10, 20)], [_flow_error("heun", n) for n in (10, 20)]
    assert heun[0] < euler[0] / 10
    assert 3.0 < heun[0] / heun[1] < 5.0  # error ~ h^2
    assert 1.5 < euler[0] / euler[1] < 2.5  # error ~ h
    assert heun[1] / 3 < 1e-3  # per unit of |x0|


def test_heun_with_x1_prediction_ends_with_euler_step_onto_x1_estimate():
    assert _flow_error("heun", 20, prediction="x1") < 1e-2
    assert _flow_error("heun", 20, prediction="x1") < _flow_error("euler", 20, prediction="x1")
    calls = []
    fm = FlowMatching(prediction="x1")

    def model(x, t, **kw):
        calls.append(t[0].item())
        return torch.full_like(x, 7.0)

    out = fm.sample(model, (2, 3), steps=4, solver="heun", progress=False, generator=torch.Generator().manual_seed(0))
    assert calls == pytest.approx([0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75])  # 2 evals per step, 1 on the last
    torch.testing.assert_close(out, torch.full((2, 3), 7.0))


def test_time_sampling_laws():
    g = torch.Generator().manual_seed(0)
    t = FlowMatching(time_sampling="logit_normal", logit_mean=0.7, logit_std=1.3).sample_time(100_000, g)
    assert t.shape == (100_000,) and ((t > 0) & (t < 1)).all()
    assert t.median().item() == pytest.approx(1 / (1 + math.exp(-0.7)), abs=0.005)
    logit = torch.log(t / (1 - t))
    assert logit.mean().item() == pytest.approx(0.7, abs=0.02)
    assert logit.std().item() == pytest.approx(1.3, abs=0.02)
    u = FlowMatching().sample_time(100_000, g)
    assert ((u >= 0) & (u < 1)).all() and u.mean().item() == pytest.approx(0.5, abs=0.005)


def test_x1_velocity_conversions():
    fm = FlowMatching(prediction="x1", min_one_minus_t=1e-3)
    x0, x1 = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    t = torch.tensor([0.0, 0.4, 0.9], dtype=torch.float64)
    x_t = fm.interpolate(x0, x1, t)
    torch.testing.assert_close(fm.velocity_from_x1(x_t, t, x1), x1 - x0)
    torch.testing.assert_close(fm.x1_from_velocity(x_t, t, x1 - x0), x1)
    torch.testing.assert_close(fm.to_velocity(x_t, t, x1), x1 - x0)
    # near t = 1 the division is capped at 1 / min_one_minus_t instead of blowing up
    t_end = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(fm.velocity_from_x1(x_t, t_end, x_t + 1), torch.full_like(x_t, 1e3))


@pytest.mark.parametrize("prediction", ["velocity", "x1"])
def test_training_loss_targets(prediction):
    """A model that can read x0 off x_t (it knows x1) gets zero loss iff the target is x1 - x0 / x1."""
    fm = FlowMatching(prediction=prediction)
    x1 = torch.randn(4, 6, 3, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.6, 0.8], dtype=torch.float64)

    def perfect(x_t, t, offset=0.0):
        tt = t.reshape(-1, 1, 1)
        x0 = (x_t - tt * x1) / (1 - tt)
        return (x1 - x0 if prediction == "velocity" else x1) + offset

    assert fm.training_loss(perfect, x1, t=t).item() == pytest.approx(0.0, abs=1e-20)
    assert fm.training_loss(perfect, x1, t=t, offset=0.5).item() == pytest.approx(0.25, rel=1e-12)


def test_masked_loss_and_sampling():
    fm = FlowMatching(prediction="x1", time_sampling="logit_normal")
    x1 = torch.randn(3, 4, 2)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    seen = {}

    def zero(x_t, t, mask=None):
        seen.update(x_t=x_t, mask=mask)
        return torch.zeros_like(x_t)

    loss = fm.training_loss(zero, x1, mask=mask, generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx((x1[mask] ** 2).sum().item() / 14, rel=1e-6)
    assert torch.equal(seen["mask"], mask) and (seen["x_t"][~mask] == 0).all()
    changed = x1.clone()
    changed[~mask] = 1e4
    net = lambda x_t, t, mask=None: x_t * 0.3 + 1  # noqa: E731
    a = fm.training_loss(net, x1, mask=mask, generator=torch.Generator().manual_seed(2))
    b = fm.training_loss(net, changed, mask=mask, generator=torch.Generator().manual_seed(2))
    assert a.item() == b.item()
    for solver in ("euler", "heun"):
        out = fm.sample(net, (3, 4, 2), steps=5, solver=solver, mask=mask, progress=False)
        assert (out[~mask] == 0).all() and (out[mask] != 0).all()


def test_self_conditioning_training_passes_detached_x1_estimate():
    fm = FlowMatching(prediction="velocity", self_condition_prob=1.0)
    calls = []
    weight = torch.tensor(0.5, requires_grad=True)

    def model(x_t, t, self_cond):
        calls.append(dict(self_cond=self_cond.clone(), grad=torch.is_grad_enabled(), x_t=x_t, t=t))
        return weight * x_t + 1.0

    x1 = torch.randn(2, 3, 4)
    fm.training_loss(model, x1, generator=torch.Generator().manual_seed(0)).backward()
    assert len(calls) == 2
    first, second = calls
    assert not first["grad"] and second["grad"]
    assert (first["self_cond"] == 0).all()
    tt = first["t"].reshape(-1, 1, 1)
    expected = first["x_t"] + (1 - tt) * (0.5 * first["x_t"] + 1.0)  # x1_hat = x_t + (1-t) v_hat
    torch.testing.assert_close(second["self_cond"], expected.detach())
    assert not second["self_cond"].requires_grad and weight.grad is not None


def test_self_conditioning_probability_and_absence():
    counts = []

    def model(x_t, t, **kwargs):
        counts.append(kwargs)
        return torch.zeros_like(x_t)

    fm = FlowMatching(self_condition_prob=0.5)
    g = torch.Generator().manual_seed(0)
    doubles = 0
    for _ in range(400):
        counts.clear()
        fm.training_loss(model, torch.randn(2, 3), generator=g)
        assert all("self_cond" in kw for kw in counts)
        doubles += len(counts) == 2
    assert 0.4 < doubles / 400 < 0.6
    counts.clear()
    FlowMatching().training_loss(model, torch.randn(2, 3))
    FlowMatching().sample(model, (2, 3), steps=3, solver="heun", progress=False)
    assert counts and all("self_cond" not in kw for kw in counts)


def test_self_conditioning_sampler_feeds_previous_estimate():
    fm = FlowMatching(prediction="x1", self_condition_prob=0.3)
    received = []

    def model(x, t, self_cond):
        received.append(self_cond.clone())
        return torch.full_like(x, float(len(received)))  # x1 estimate = call index

    fm.sample(model, (2, 3), steps=3, solver="heun", progress=False)
    assert len(received) == 5
    assert (received[0] == 0).all()
    for i in range(1, 5):
        assert (received[i] == i).all()


def test_bad_inputs_raise_clear_errors():
    fm = FlowMatching()
    net = lambda x, t, **kw: x  # noqa: E731
    x1 = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="unknown prediction 'eps'"):
        FlowMatching(prediction="eps")
    with pytest.raises(ValueError, match="unknown time_sampling"):
        FlowMatching(time_sampling="beta")
    with pytest.raises(ValueError, match="self_condition_prob"):
        FlowMatching(self_condition_prob=1.5)
    with pytest.raises(ValueError, match="unknown solver 'rk4'"):
        fm.sample(net, (2, 3), solver="rk4", progress=False)
    with pytest.raises(ValueError, match="prefix"):
        fm.training_loss(net, x1, mask=torch.ones(3, 3, dtype=torch.bool))
    bad = x1.clone()
    bad[1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="x1 contains NaN or Inf"):
        fm.training_loss(net, bad)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        fm.training_loss(net, x1, t=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="float tensor"):
        fm.interpolate(x1, x1, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="shape or x0"):
        fm.sample(net, progress=False)
    with pytest.raises(ValueError, match="supplied by FlowMatching"):
        FlowMatching(self_condition_prob=0.5).training_loss(net, x1, self_cond=x1)
    with pytest.raises(ValueError, match="steps"):
        fm.sample(net, (2, 3), steps=0, progress=False)


def test_sampling_can_start_at_a_later_time():
    """t_start: the model is asked only at times in [t_start, 1); a bad t_start is refused."""
    seen = []

    def model(x, t):
        seen.extend(t.view(-1).tolist())
        return torch.zeros_like(x)

    fm = FlowMatching()
    x0 = torch.randn(2, 3, 4)
    out = fm.sample(model, x0=x0, steps=4, progress=False, t_start=0.6)
    assert torch.equal(out, x0)  # zero velocity: nothing moves
    assert min(seen) == pytest.approx(0.6) and max(seen) == pytest.approx(0.9) and len(set(seen)) == 4
    with pytest.raises(ValueError, match=r"t_start must lie in \[0, 1\)"):
        fm.sample(model, x0=x0, steps=2, progress=False, t_start=1.0)
    with pytest.raises(ValueError, match="t_start=0.6 needs x0"):  # drawn noise belongs to t = 0
        fm.sample(model, shape=x0.shape, steps=2, progress=False, t_start=0.6)


def test_temperature_scales_the_drawn_noise_only():
    """With zero velocity the sample is the initial noise: tau times the tau = 1 draw."""
    fm = FlowMatching()
    model = lambda x, t, **kw: torch.zeros_like(x)  # noqa: E731
    mask = torch.tensor([[True, True, False], [True, False, False]])
    draw = lambda tau: fm.sample(model, (2, 3, 4), steps=2, mask=mask, progress=False,  # noqa: E731
                                 generator=torch.Generator().manual_seed(0), temperature=tau)
    plain = fm.sample(model, (2, 3, 4), steps=2, mask=mask, progress=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draw(1.0), plain) and plain[~mask].abs().sum() == 0
    torch.testing.assert_close(draw(0.5), 0.5 * plain, rtol=0, atol=0)
    for bad in (0.0, -1.0, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
            draw(bad)
    with pytest.raises(ValueError, match="with x0 given"):
        fm.sample(model, x0=plain, steps=2, progress=False, temperature=0.5)
