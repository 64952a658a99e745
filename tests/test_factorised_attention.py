"""Factorised (per-axis-group) attention in the shared trunk: equal to joint attention under the matching
block masks, checked against a slow dense reference; joint layout unchanged by default."""
import math

import pytest
import torch

from dit3d.nn import (Attention, DiTBlock, DiTTrunk, FactorisedDiTBlock, axes_window, modulate,
                      window_attention_mask)
from dit3d.testing import (assert_identity_at_init, assert_padding_invariant, assert_permutation_equivariant,
                           assert_window_equals_masked_full, randomize_, reference_attention)


def axes_mask(grid, axes) -> torch.Tensor:
    """Dense (T, T) mask built by hand: i may attend j iff they agree on every axis outside ``axes``."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij"), -1).reshape(-1, len(grid))
    others = [a for a in range(len(grid)) if a not in axes]
    same = torch.ones(len(coords), len(coords), dtype=torch.bool)
    for a in others:
        same &= coords[:, None, a] == coords[None, :, a]
    return same


def slow_factorised_block(block: FactorisedDiTBlock, x, c, grid, mask=None):
    """The block written out with dense-masked float64 attention, one sub-layer after another."""
    B, T, D = x.shape
    x, c = x.double(), c.double()
    mod = torch.nn.functional.linear(torch.nn.functional.silu(c), block.adaLN_modulation[1].weight.double(),
                                     block.adaLN_modulation[1].bias.double())[:, None].chunk(3 * (len(block.axes) + 1),
                                                                                           -1)
    norm = lambda h: torch.nn.functional.layer_norm(h, (D,), eps=1e-6)  # noqa: E731
    for k, (axes, attn) in enumerate(zip(block.axes, block.attns)):
        allowed = axes_mask(grid, axes)[None].expand(B, T, T)
        if mask is not None:
            allowed = allowed & mask[:, None, :]
        shift, scale, gate = mod[3 * k: 3 * k + 3]
        x = x + gate * reference_attention(attn, modulate(norm(x), shift, scale), allowed)
    shift, scale, gate = mod[-3:]
    h = modulate(norm(x), shift, scale)
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    h = torch.nn.functional.linear(h, fc1.weight.double(), fc1.bias.double())
    h = torch.nn.functional.gelu(h, approximate="tanh")
    return x + gate * torch.nn.functional.linear(h, fc2.weight.double(), fc2.bias.double())


def test_axes_window_and_its_mask_match_the_hand_made_mask():
    grid = (3, 2, 4)
    assert axes_window(grid, (1, 2)) == (1, 2, 4) and axes_window(grid, (0,)) == (3, 1, 1)
    for axes in [(1, 2), (0,), (0, 2), (0, 1, 2)]:
        assert torch.equal(window_attention_mask(grid, axes_window(grid, axes)), axes_mask(grid, axes))
    spatial = axes_mask(grid, (1, 2))
    assert spatial[0, 7] and not spatial[0, 8]  # tokens 0..7 form frame 0
    temporal = axes_mask(grid, (0,))
    assert temporal[0, 8] and temporal[0, 16] and not temporal[0, 1]  # one (h, w) across frames
    with pytest.raises(ValueError, match="distinct indices"):
        axes_window(grid, (3,))


@pytest.mark.parametrize("axes", [(1, 2), (0,), (0, 1, 2)])
def test_axis_attention_equals_masked_joint_attention(axes):
    attn = randomize_(Attention(24, 4, axes=axes), std=0.3)
    grid = (4, 2, 3)
    x = torch.randn(2, 24, 24, generator=torch.Generator().manual_seed(1))
    assert_window_equals_masked_full(attn, x, grid)  # the library's check, with the window of the axes
    fast = attn(x, grid=grid)
    slow = reference_attention(attn, x, axes_mask(grid, axes)[None].expand(2, 24, 24)).float()
    assert (fast - slow).abs().max() < 1e-4
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 18:] = False
    assert_window_equals_masked_full(attn, x, grid, mask)
    with pytest.raises(ValueError, match="needs the token grid"):
        attn(x)
    with pytest.raises(ValueError, match="not both"):
        Attention(24, 4, window_size=(2, 2, 3), axes=(0,))


def test_factorised_block_equals_the_slow_reference_with_and_without_padding():
    block = randomize_(FactorisedDiTBlock(24, 4), std=0.2)
    grid = (4, 2, 3)  # (F, H, W)
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 24, 24, generator=g), torch.randn(2, 24, generator=g)
    with torch.no_grad():
        assert (block(x, c, grid=grid).double() - slow_factorised_block(block, x, c, grid)).abs().max() < 1e-4
        mask = torch.ones(2, 24, dtype=torch.bool)
        mask[0, 12:] = False  # the last two frames of sample 0 are padding
        fast = block(x, c, mask, grid).double()
        slow = slow_factorised_block(block, x, c, grid, mask)
    assert (fast[mask] - slow[mask]).abs().max() < 1e-4


def test_factorised_with_one_group_of_all_axes_is_the_joint_block():
    joint = randomize_(DiTBlock(24, 4), std=0.2)
    one = FactorisedDiTBlock(24, 4, axes=((0, 1, 2),))
    one.load_state_dict({k.replace("attn.", "attns.0."): v for k, v in joint.state_dict().items()})
    x, c = torch.randn(2, 24, 24), torch.randn(2, 24)
    with torch.no_grad():
        assert torch.allclose(one(x, c, grid=(4, 2, 3)), joint(x, c), atol=1e-5)


def test_factorised_attention_mixes_space_and_time_in_one_block_but_stays_within_a_sample():
    block = randomize_(FactorisedDiTBlock(24, 4), std=0.2)
    grid = (3, 2, 2)
    x, c = torch.randn(2, 12, 24), torch.randn(2, 24)
    x2 = x.clone()
    x2[0, 0] += torch.randn(24)  # frame 0, (0, 0) of sample 0 (not a constant: LayerNorm would remove it)
    with torch.no_grad():
        d = (block(x2, c, grid=grid) - block(x, c, grid=grid)).abs().amax(-1)
    assert (d[0] > 1e-6).all()  # spatial then temporal: every token of sample 0 sees the change
    assert (d[1] == 0).all()  # never across samples


def test_trunk_selects_the_layout_per_block_and_keeps_joint_by_default():
    default = DiTTrunk(3, 24, 4)
    assert all(type(b) is DiTBlock for b in default.blocks) and default.factorised_blocks == ()
    trunk = DiTTrunk(3, 24, 4, factorised_blocks=(0, 2))
    assert [type(b).__name__ for b in trunk.blocks] == ["FactorisedDiTBlock", "DiTBlock", "FactorisedDiTBlock"]
    assert trunk.blocks[0].axes == ((1, 2), (0,))
    grid = (2, 3, 2)
    x, c = torch.randn(2, 12, 24), torch.randn(2, 24)
    assert_identity_at_init(trunk, x, c, grid=grid)  # adaLN-Zero holds for factorised blocks too
    randomize_(trunk, std=0.1)
    assert torch.isfinite(trunk(x, c, grid=grid)).all()
    with pytest.raises(ValueError, match="prod\\(grid\\) == T"):
        trunk(x, c)
    with pytest.raises(ValueError, match="has 2 axes"):
        trunk(x, c, grid=(6, 2))
    with pytest.raises(ValueError, match="one attention layout"):
        DiTTrunk(2, 24, 4, window_size=(1, 3, 2), window_blocks=(0,), factorised_blocks=(0,))
    with pytest.raises(ValueError, match="outside 0..1"):
        DiTTrunk(2, 24, 4, factorised_blocks=(2,))
    with pytest.raises(ValueError, match="depend on token order"):
        assert_permutation_equivariant(trunk, x, c)


def test_trunk_with_factorised_blocks_ignores_padding():
    trunk = randomize_(DiTTrunk(2, 24, 4, factorised_blocks=(0, 1), factorised_axes=((0,),)), std=0.2)
    # axes ((0,),) on a 1-D grid is joint attention, so padding can be appended along it
    real = torch.randn(2, 5, 24)
    c = torch.randn(2, 24)
    pad = torch.cat([real, torch.randn(2, 3, 24) * 10], 1)
    mask = torch.cat([torch.ones(2, 5, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)], 1)
    with torch.no_grad():
        a = trunk(real, c, grid=(5,))
        b = trunk(pad, c, mask, grid=(8,))
    assert (a - b[:, :5]).abs().max() < 1e-4 and b[:, 5:].abs().max() == 0
    joint = randomize_(DiTTrunk(2, 24, 4), std=0.2)
    assert_padding_invariant(joint, real, c)  # the default trunk's property still holds


def test_factorised_cost_counts_fewer_attention_pairs():
    grid = (16, 8, 8)
    T = math.prod(grid)
    pairs_joint = int(window_attention_mask(grid, grid).sum())
    pairs_fact = sum(int(window_attention_mask(grid, axes_window(grid, a)).sum()) for a in ((1, 2), (0,)))
    assert pairs_joint == T * T and pairs_fact == T * (64 + 16)
