"""Permutation coupling against brute force over all permutations, and inside FlowMatching."""
import itertools

import pytest
import torch

from dit3d.objectives import FlowMatching
from dit3d.objectives.coupling import permutation_coupling


def _brute_force(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The noise of one sample ``(n, F)`` reordered by the cheapest of all n! permutations."""
    best = min(itertools.permutations(range(x1.shape[0])),
               key=lambda p: float(((x0[list(p)] - x1) ** 2).sum()))
    return x0[list(best)]


def test_matches_brute_force_on_every_sample():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, 5, 2, 3, generator=g), torch.randn(4, 5, 2, 3, generator=g)  # tokens with 2x3 features
    out = permutation_coupling(x0, x1)
    for b in range(4):
        torch.testing.assert_close(out[b].flatten(1), _brute_force(x0[b].flatten(1), x1[b].flatten(1)))


def test_is_a_permutation_of_each_samples_own_noise_and_never_costs_more():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(6, 7, 4, generator=g), torch.randn(6, 7, 4, generator=g)
    out = permutation_coupling(x0, x1)
    for b in range(6):  # same multiset of tokens: sort rows lexicographically via their first feature
        torch.testing.assert_close(out[b][out[b][:, 0].argsort()], x0[b][x0[b][:, 0].argsort()])
    cost = lambda z: ((z - x1) ** 2).sum((1, 2))  # noqa: E731
    assert bool((cost(out) <= cost(x0) + 1e-6).all()) and float(cost(out).sum()) < float(cost(x0).sum())


def test_hand_made_assignment():
    x1 = torch.tensor([[[0.0], [10.0], [5.0]]])
    x0 = torch.tensor([[[9.0], [4.0], [-1.0]]])
    assert permutation_coupling(x0, x1)[0, :, 0].tolist() == [-1.0, 9.0, 4.0]


def test_padding_stays_in_place_and_real_tokens_only_swap_among_real_positions():
    x1 = torch.tensor([[[0.0], [0.0], [10.0], [0.0]]])
    x0 = torch.tensor([[[10.0], [7.0], [0.5], [99.0]]])
    mask = torch.tensor([[True, False, True, False]])
    out = permutation_coupling(x0, x1, mask)
    assert out[0, :, 0].tolist() == [0.5, 7.0, 10.0, 99.0]
    one = torch.tensor([[True, False, False, False]])  # a single real token has nothing to swap with
    assert torch.equal(permutation_coupling(x0, x1, one), x0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="token axis"):
        permutation_coupling(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="share one shape"):
        permutation_coupling(torch.zeros(2, 3, 1), torch.zeros(2, 4, 1))
    nan = torch.zeros(2, 3, 1)
    nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x1 contains NaN"):
        permutation_coupling(torch.zeros(2, 3, 1), nan)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        permutation_coupling(nan, torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="per-token mask"):
        permutation_coupling(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.ones(2, 3, 1, dtype=torch.bool))


def test_flow_matching_trains_on_the_coupled_noise():
    """With a perfect model that knows x1 and recovers x0 from x_t, the loss is zero, and the
    x0 it recovers is the optimally permuted noise: cheaper to reach x1 than the raw draw."""
    x1 = torch.randn(3, 6, 2, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    seen = {}

    def perfect(x_t, t, mask=None):
        tt = t.reshape(-1, 1, 1)
        seen["x0"] = (x_t - tt * x1 * mask[..., None]) / (1 - tt)
        return x1 * mask[..., None] - seen["x0"]

    coupled = FlowMatching(coupling="permutation")
    assert coupled.training_loss(perfect, x1, mask=mask, t=t, generator=torch.Generator().manual_seed(3)).item() \
        == pytest.approx(0.0, abs=1e-20)
    independent = FlowMatching()
    independent.training_loss(perfect, x1, mask=mask, t=t, generator=torch.Generator().manual_seed(3))
    raw = seen["x0"]  # the same draw (same generator), unpermuted
    coupled.training_loss(perfect, x1, mask=mask, t=t, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(seen["x0"], permutation_coupling(raw, x1, mask))
    assert float(((seen["x0"] - x1) ** 2 * mask[..., None]).sum()) < float(((raw - x1) ** 2 * mask[..., None]).sum())


def test_unknown_coupling_is_refused():
    with pytest.raises(ValueError, match="coupling"):
        FlowMatching(coupling="minibatch")
