import pytest
import torch

from dit3d.nn import DiTTrunk
from dit3d.testing import randomize_


def test_window_blocks_are_selected_per_block():
    trunk = DiTTrunk(4, 24, 4, window_size=(2, 2, 2), window_blocks=(0, 3))
    assert [b.attn.window_size for b in trunk.blocks] == [(2, 2, 2), None, None, (2, 2, 2)]


def test_window_trunk_keeps_samples_apart():
    """Changing sample 1 must not change sample 0's output."""
    trunk = randomize_(DiTTrunk(2, 24, 4, window_size=(2, 2), window_blocks=(0, 1)))
    x, c = torch.randn(2, 16, 24), torch.randn(2, 24)
    y = trunk(x, c, grid=(4, 4))
    x2 = x.clone()
    x2[1] += 1
    assert torch.equal(trunk(x2, c, grid=(4, 4))[0], y[0])


def test_gradients_reach_every_parameter_within_three_steps():
    """Zero-init gates open one layer per step: final layer, then gates, then the rest."""
    trunk = DiTTrunk(2, 24, 4, out_dim=3)
    opt = torch.optim.SGD(trunk.parameters(), lr=0.1)
    x, c, target = torch.randn(2, 5, 24), torch.randn(2, 24), torch.randn(2, 5, 3)
    for _ in range(3):
        opt.zero_grad()
        (trunk(x, c) - target).square().mean().backward()
        opt.step()
    dead = [n for n, p in trunk.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert dead == []


@pytest.mark.parametrize("args,msg", [
    (dict(x=torch.randn(2, 5)), r"shape \(B, T, 24\)"),
    (dict(x=torch.randn(2, 5, 12)), r"shape \(B, T, 24\)"),
    (dict(c=torch.randn(3, 24)), "condition"),
    (dict(mask=torch.ones(2, 4, dtype=torch.bool)), "mask must have shape"),
    (dict(mask=torch.ones(2, 5)), "must be bool"),
    (dict(x=torch.full((2, 5, 24), float("nan"))), "NaN"),
    (dict(c=torch.full((2, 24), float("inf"))), "NaN or inf"),
])
def test_bad_inputs_raise_clear_errors(args, msg):
    trunk = DiTTrunk(1, 24, 4)
    kw = dict(x=torch.randn(2, 5, 24), c=torch.randn(2, 24), mask=None) | args
    with pytest.raises(ValueError, match=msg):
        trunk(kw["x"], kw["c"], kw["mask"])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="outside"):
        DiTTrunk(2, 24, 4, window_size=(2,), window_blocks=(2,))
    with pytest.raises(ValueError, match="window_size is None"):
        DiTTrunk(2, 24, 4, window_blocks=(0,))
    with pytest.raises(ValueError, match="prod"):
        DiTTrunk(1, 24, 4, window_size=(2,), window_blocks=(0,))(torch.randn(1, 4, 24), torch.randn(1, 24), grid=(3,))
