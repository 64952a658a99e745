"""The shipped property checks hold for the trunk, and catch a network that breaks them."""
import pytest
import torch

from dit3d.nn import Attention, DiTTrunk
from dit3d.testing import (
    assert_identity_at_init, assert_padding_invariant, assert_permutation_equivariant,
    assert_window_equals_masked_full, randomize_,
)


def tokens(B=2, T=7, D=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g), torch.randn(B, D, generator=g)


@pytest.mark.parametrize("qk_norm,norm", [(False, "layernorm"), (True, "rmsnorm")])
def test_trunk_permutation_equivariant(qk_norm, norm):
    trunk = randomize_(DiTTrunk(2, 24, 4, qk_norm=qk_norm, norm=norm))
    x, c = tokens()
    assert_permutation_equivariant(trunk, x, c)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    assert_permutation_equivariant(trunk, x, c, mask)


def test_trunk_padding_invariant():
    trunk = randomize_(DiTTrunk(3, 24, 4, out_dim=5))
    x, c = tokens()
    assert_padding_invariant(trunk, x, c, num_pad=4)


def test_fresh_trunk_is_identity_and_outputs_zero():
    x, c = tokens(T=8)
    assert_identity_at_init(DiTTrunk(3, 24, 4, out_dim=6), x, c)
    windowed = DiTTrunk(2, 24, 4, window_size=(2, 2), window_blocks=(0,))
    assert_identity_at_init(windowed, x, c, grid=(2, 4))


@pytest.mark.parametrize("grid,window", [((12,), (4,)), ((4, 6), (2, 3)), ((4, 4, 4), (2, 2, 2)),
                                         ((8, 8, 8), (4, 4, 4))])
def test_window_attention_equals_masked_full(grid, window):
    T = torch.tensor(grid).prod().item()
    attn = randomize_(Attention(24, 4, window_size=window), std=0.3)
    x, _ = tokens(B=3, T=T)
    assert_window_equals_masked_full(attn, x, grid)
    mask = torch.rand(3, T, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[2] = False  # an all-padding sample must not produce NaN or leak
    assert_window_equals_masked_full(attn, x, grid, mask)


def test_checks_catch_a_broken_network():
    """A trunk that leaks across samples (mean over the batch) must fail the checks."""
    trunk = randomize_(DiTTrunk(1, 24, 4))
    x, c = tokens()

    class Leaky(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.window_blocks = inner, ()

        def forward(self, x, c, mask=None, grid=None):
            y = self.inner(x, c, mask)
            return y + x.mean(dim=1, keepdim=True)  # mixes padded tokens into real ones

    with pytest.raises(AssertionError, match="padding"):
        assert_padding_invariant(Leaky(trunk), x, c)
    with pytest.raises(AssertionError, match="fresh trunk"):
        assert_identity_at_init(trunk, x, c)
