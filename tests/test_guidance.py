"""Guidance wrappers: classifier-free guidance (linear combination, single batched call, kwarg handling),
autoguidance, and both at once (guidance_sum)."""
import pytest
import torch

from dit3d.objectives import FlowMatching, GaussianDiffusion, autoguidance, classifier_free_guidance, guidance_sum


class Recorder:
    """Model whose output depends on x, t and the label y; records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y, **kwargs):
        self.calls.append(dict(x=x, t=t, y=y, **kwargs))
        return torch.sin(x) * (1 + y.to(x.dtype)[:, None]) + t.to(x.dtype)[:, None]


def _inputs():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 4, generator=g), torch.tensor([0.1, 0.5, 0.9])
    return x, t, {"y": torch.tensor([2, 5, 1])}, {"y": torch.tensor([0, 0, 0])}


def test_scale_one_is_the_conditional_model_in_one_call():
    x, t, cond, uncond = _inputs()
    model = Recorder()
    out = classifier_free_guidance(model, 1.0, cond, uncond)(x, t)
    torch.testing.assert_close(out, Recorder()(x, t, **cond))
    assert len(model.calls) == 1 and model.calls[0]["x"].shape == (3, 4)


def test_scale_zero_is_the_unconditional_model():
    x, t, cond, uncond = _inputs()
    out = classifier_free_guidance(Recorder(), 0.0, cond, uncond)(x, t)
    torch.testing.assert_close(out, Recorder()(x, t, **uncond))


@pytest.mark.parametrize("scale", [-0.5, 2.0, 7.5])
def test_scale_gives_linear_combination_in_one_batched_call(scale):
    x, t, cond, uncond = _inputs()
    model = Recorder()
    out = classifier_free_guidance(model, scale, cond, uncond)(x, t)
    c, u = Recorder()(x, t, **cond), Recorder()(x, t, **uncond)
    torch.testing.assert_close(out, u + scale * (c - u))
    assert len(model.calls) == 1
    call = model.calls[0]
    assert call["x"].shape == (6, 4) and call["t"].tolist() == pytest.approx([0.1, 0.5, 0.9] * 2)
    assert call["y"].tolist() == [2, 5, 1, 0, 0, 0]  # conditional half first


def test_sampler_kwargs_are_duplicated_and_non_tensors_passed_through():
    x, t, cond, uncond = _inputs()
    model = Recorder()
    mask, self_cond = torch.tensor([[True, False]] * 3), torch.randn(3, 4)
    guided = classifier_free_guidance(model, 3.0, {**cond, "mode": "a"}, {**uncond, "mode": "a"})
    guided(x, t, mask=mask, self_cond=self_cond, flag=True)
    call = model.calls[0]
    torch.testing.assert_close(call["self_cond"], torch.cat([self_cond, self_cond]))
    assert torch.equal(call["mask"], torch.cat([mask, mask]))
    assert call["mode"] == "a" and call["flag"] is True


def test_works_inside_both_samplers_with_one_call_per_step():
    model = Recorder()
    guided = classifier_free_guidance(model, 4.0, {"y": torch.ones(2, dtype=torch.long)},
                                      {"y": torch.zeros(2, dtype=torch.long)})
    out = GaussianDiffusion(num_timesteps=10).ddim_sample_loop(guided, (2, 4), steps=5, progress=False)
    assert out.shape == (2, 4) and len(model.calls) == 5
    model.calls.clear()
    fm = FlowMatching(self_condition_prob=0.5)
    out = fm.sample(guided, (2, 4), steps=3, solver="heun", progress=False)
    assert out.shape == (2, 4) and len(model.calls) == 6
    assert all(call["self_cond"].shape == (4, 4) for call in model.calls)


def test_bad_kwargs_raise_clear_errors():
    x, t, cond, uncond = _inputs()
    with pytest.raises(ValueError, match="must be the same"):
        classifier_free_guidance(Recorder(), 2.0, cond, {"z": uncond["y"]})
    with pytest.raises(ValueError, match="differs between cond"):
        classifier_free_guidance(Recorder(), 2.0, {**cond, "m": 1}, {**uncond, "m": 2})(x, t)
    with pytest.raises(ValueError, match="batch size 3"):
        classifier_free_guidance(Recorder(), 2.0, {"y": torch.ones(4)}, {"y": torch.ones(4)})(x, t)
    with pytest.raises(ValueError, match="both to the guided call"):
        classifier_free_guidance(Recorder(), 2.0, cond, uncond)(x, t, y=cond["y"])


# ------------------------------------------------------------------ autoguidance
def test_autoguidance_is_the_model_alone_at_scale_one_and_the_guide_at_zero():
    x, t, cond, _ = _inputs()
    model, guide = Recorder(), lambda x, t, y: torch.cos(x) * y.to(x.dtype)[:, None]
    out = autoguidance(lambda x, t, **kw: model(x, t, **kw), guide, 1.0)(x, t, **cond)
    torch.testing.assert_close(out, Recorder()(x, t, **cond))
    assert len(model.calls) == 1  # the guide is not even called
    torch.testing.assert_close(autoguidance(Recorder(), guide, 0.0)(x, t, **cond), guide(x, t, **cond))


@pytest.mark.parametrize("scale", [-0.5, 2.0, 3.5])
def test_autoguidance_extrapolates_from_the_guide_with_the_same_arguments(scale):
    x, t, cond, _ = _inputs()
    model, guide = Recorder(), Recorder()
    weak = lambda x, t, **kw: 0.5 * guide(x, t, **kw)  # noqa: E731
    mask = torch.tensor([True, True, False])
    out = autoguidance(model, weak, scale)(x, t, mask=mask, **cond)
    full, half = Recorder()(x, t, **cond), 0.5 * Recorder()(x, t, **cond)
    torch.testing.assert_close(out, half + scale * (full - half))
    for call in model.calls + guide.calls:  # both see exactly the caller's arguments
        assert torch.equal(call["x"], x) and torch.equal(call["y"], cond["y"]) and torch.equal(call["mask"], mask)


def test_autoguidance_in_a_flow_sampler_matches_the_combined_velocity():
    target_strong, target_weak = torch.full((2, 3), 1.0), torch.full((2, 3), 0.4)
    strong = lambda x, t, **kw: target_strong - x  # noqa: E731  (velocities towards a point, flow time to 1)
    weak = lambda x, t, **kw: target_weak - x  # noqa: E731
    flow = FlowMatching()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    guided = flow.sample(autoguidance(strong, weak, 2.0), (2, 3), steps=8, generator=g(), progress=False)
    combined = flow.sample(lambda x, t, **kw: (0.4 + 2.0 * 0.6) - x, (2, 3), steps=8, generator=g(), progress=False)
    torch.testing.assert_close(guided, combined)


def test_autoguidance_in_an_interval_guides_only_the_times_inside():
    x, t = torch.randn(3, 4), torch.tensor([0.1, 0.5, 0.9])
    model, guide = Recorder(), lambda x, t, y: torch.cos(x) * y.to(x.dtype)[:, None]
    y = torch.tensor([1, 2, 3])
    out = autoguidance(model, guide, 2.0, interval=(0.4, 0.6))(x, t, y=y)
    full = autoguidance(Recorder(), guide, 2.0)(x, t, y=y)
    plain = Recorder()(x, t, y=y)
    torch.testing.assert_close(out[1], full[1])  # inside: guided
    torch.testing.assert_close(out[[0, 2]], plain[[0, 2]])  # outside: the model alone
    calls = []
    counted = lambda x, t, **kw: calls.append(t) or x  # noqa: E731
    autoguidance(Recorder(), counted, 2.0, interval=(0.4, 0.6))(x, torch.full((3,), 0.9), y=y)
    assert calls == []  # every time outside: the guide is not called
    with pytest.raises(ValueError, match="lo <= hi"):
        autoguidance(Recorder(), counted, 2.0, interval=(0.7, 0.2))


def test_autoguidance_interval_in_a_flow_sampler_switches_the_velocity_at_its_start():
    strong = lambda x, t, **kw: torch.full_like(x, 1.0) - x  # noqa: E731
    weak = lambda x, t, **kw: torch.full_like(x, 0.4) - x  # noqa: E731
    flow = FlowMatching()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    guided = flow.sample(autoguidance(strong, weak, 2.0, interval=(0.5, 1.0)), (2, 3), steps=8, generator=g(),
                         progress=False)
    switched = lambda x, t, **kw: torch.where(t[:, None] >= 0.5, 1.6 - x, 1.0 - x)  # noqa: E731
    combined = flow.sample(switched, (2, 3), steps=8, generator=g(), progress=False)
    torch.testing.assert_close(guided, combined)


# ------------------------------------------------------------------ both at once
def _weak(x, t, y, **kwargs):
    return torch.cos(x) * y.to(x.dtype)[:, None]


@pytest.mark.parametrize("scale,auto", [(3.0, 2.0), (0.5, 1.5), (4.0, -1.0)])
def test_guidance_sum_adds_both_directions_to_the_conditional_prediction(scale, auto):
    x, t, cond, uncond = _inputs()
    model, guide = Recorder(), Recorder()
    mask = torch.tensor([True, False, True])
    out = guidance_sum(model, lambda x, t, **kw: 0.3 * guide(x, t, **kw), scale, auto, cond, uncond)(x, t, mask=mask)
    f_c, f_u = Recorder()(x, t, **cond), Recorder()(x, t, **uncond)
    g_c = 0.3 * Recorder()(x, t, **cond)
    torch.testing.assert_close(out, f_c + (scale - 1) * (f_c - f_u) + (auto - 1) * (f_c - g_c))
    assert len(model.calls) == 1 and model.calls[0]["x"].shape[0] == 6  # both halves in one doubled call
    assert len(guide.calls) == 1 and torch.equal(guide.calls[0]["y"], cond["y"])  # the guide sees the condition
    assert torch.equal(guide.calls[0]["mask"], mask)


def test_guidance_sum_is_each_guidance_alone_at_the_other_ones_scale_one():
    x, t, cond, uncond = _inputs()
    guide_calls = []
    counted = lambda x, t, **kw: guide_calls.append(t) or _weak(x, t, **kw)  # noqa: E731
    cfg_only = guidance_sum(Recorder(), counted, 3.0, 1.0, cond, uncond)(x, t)
    assert torch.equal(cfg_only, classifier_free_guidance(Recorder(), 3.0, cond, uncond)(x, t))  # to the bit
    assert guide_calls == []
    auto_only = guidance_sum(Recorder(), _weak, 1.0, 2.5, cond, uncond)(x, t)
    model = lambda x, t, **kw: Recorder()(x, t, **cond, **kw)  # noqa: E731
    weak = lambda x, t, **kw: _weak(x, t, **cond, **kw)  # noqa: E731
    assert torch.equal(auto_only, autoguidance(model, weak, 2.5)(x, t))
    assert guidance_sum(Recorder(), None, 2.0, 1.0, cond, uncond) is not None  # no guide needed without its term
    with pytest.raises(ValueError, match=r"autoguidance 1.5 needs a guide network \(guide_fn=None\)"):
        guidance_sum(Recorder(), None, 2.0, 1.5, cond, uncond)


def test_guidance_sum_applies_the_autoguidance_term_only_inside_the_interval():
    x, t, cond, uncond = _inputs()  # t = 0.1, 0.5, 0.9
    out = guidance_sum(Recorder(), _weak, 2.0, 3.0, cond, uncond, interval=(0.4, 1.0))(x, t)
    both = guidance_sum(Recorder(), _weak, 2.0, 3.0, cond, uncond)(x, t)
    cfg = classifier_free_guidance(Recorder(), 2.0, cond, uncond)(x, t)
    torch.testing.assert_close(out[1:], both[1:])
    torch.testing.assert_close(out[0], cfg[0])
    guide_calls = []
    counted = lambda x, t, **kw: guide_calls.append(t) or _weak(x, t, **kw)  # noqa: E731
    guidance_sum(Recorder(), counted, 2.0, 3.0, cond, uncond, interval=(0.95, 1.0))(x, t)
    assert guide_calls == []
    with pytest.raises(ValueError, match="lo <= hi"):
        guidance_sum(Recorder(), _weak, 2.0, 3.0, cond, uncond, interval=(0.9, 0.1))
