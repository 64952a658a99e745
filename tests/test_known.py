"""Known-entry conditioning of GaussianDiffusion: the loss scores generated entries only, the network
sees the known ones clean, and sampling returns them bit for bit."""
import pytest
import torch

from dit3d.objectives import GaussianDiffusion, known_sample_loop, known_training_loss, replace_known


def test_replace_known_is_an_exact_select():
    x, x0 = torch.randn(2, 3), torch.randn(2, 3)
    known = torch.tensor([[True, False, True], [False, False, False]])
    out = replace_known(x, x0, known)
    assert torch.equal(out[known], x0[known]) and torch.equal(out[~known], x[~known])


def test_loss_sees_known_entries_clean_and_scores_only_generated_ones():
    diffusion = GaussianDiffusion(10)
    x0 = torch.randn(2, 1, 4)
    known = torch.tensor([True, True, False, False]).reshape(1, 1, 4).expand(2, 1, 4)
    seen = {}

    def model(x_t, t, flag=None):
        seen["x_t"], seen["flag"] = x_t, flag
        out = torch.zeros_like(x_t)
        out[..., :2] = 1e6  # a huge error on the known entries must not count
        return out

    g = torch.Generator().manual_seed(0)
    loss = known_training_loss(diffusion, model, x0, known, g, flag="given")
    assert torch.equal(seen["x_t"][..., :2], x0[..., :2]) and seen["flag"] == "given"
    assert not torch.equal(seen["x_t"][..., 2:], x0[..., 2:])  # generated entries are noised
    g = torch.Generator().manual_seed(0)
    torch.randint(0, 10, (2,), generator=g)  # the t draw comes first
    noise = torch.randn(x0.shape, generator=g)
    assert torch.allclose(loss, (noise[..., 2:] ** 2).mean())  # zero prediction: the mean of eps^2 where generated
    everything = known_training_loss(diffusion, lambda x, t: x * 0, x0, torch.ones(2, 1, 4, dtype=torch.bool))
    assert everything.item() == 0.0


def test_sampling_returns_the_known_entries_exactly_and_shows_them_clean():
    diffusion = GaussianDiffusion(20)
    x0 = torch.randn(3, 2, 5)
    known = torch.zeros(3, 1, 5, dtype=torch.bool)
    known[:, :, :2] = True
    calls = []

    def model(x_t, t):
        calls.append(torch.equal(x_t[..., :2], x0[..., :2]))
        return torch.tanh(x_t.roll(1, dims=-1))  # depends on the known entries

    for sampler, steps in (("ddim", 4), ("ddpm", None)):
        out = known_sample_loop(diffusion, model, x0, known, sampler, steps, eta=0.5, clip_denoised=1.0,
                                generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[..., :2], x0[..., :2]) and torch.isfinite(out).all()
        assert out[..., 2:].abs().max() <= 1.0
    assert all(calls) and len(calls) == 4 + 20
    # the generated entries depend on the known ones only through the network
    other = x0.clone()
    other[..., 2:] = 123.0  # never read
    a = known_sample_loop(diffusion, model, x0, known, steps=3, generator=torch.Generator().manual_seed(1))
    b = known_sample_loop(diffusion, model, other, known, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[..., 2:], b[..., 2:])


def test_bad_masks_and_samplers_say_what_to_do():
    diffusion, x0 = GaussianDiffusion(10), torch.randn(2, 3)
    with pytest.raises(ValueError, match="bool"):
        known_training_loss(diffusion, lambda x, t: x, x0, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        known_training_loss(diffusion, lambda x, t: x, x0, torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="sampler='ddim'"):
        known_sample_loop(diffusion, lambda x, t: x, x0, torch.zeros(2, 3, dtype=torch.bool), "ddpm", steps=3)
    with pytest.raises(ValueError, match="x_t's shape"):
        known_training_loss(diffusion, lambda x, t: x[:, :2], x0, torch.zeros(2, 3, dtype=torch.bool))
