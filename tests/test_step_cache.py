"""Branch caching across sampling steps (FORA): dit3d.nn.step_cache."""
import pytest
import torch

from dit3d.nn import BranchCache, DiTTrunk, branch_caching


def _trunk(**kwargs) -> DiTTrunk:
    torch.manual_seed(0)
    trunk = DiTTrunk(depth=2, hidden_size=12, num_heads=2, **kwargs).eval()
    for p in trunk.parameters():  # adaLN-Zero starts as the identity; give the gates something to do
        torch.nn.init.normal_(p, std=0.3)
    return trunk


def _reference_reuse(trunk: DiTTrunk, x_old, c_old, x_new, c_new, grid=None):
    """Slow reference: record each branch at (x_old, c_old) with hooks, then rebuild the
    residual stream at (x_new, c_new) from the recorded branches and the new gates."""
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out))
             for block in trunk.blocks for m in [*getattr(block, "attns", [getattr(block, "attn", None)]), block.mlp]]
    trunk(x_old, c_old, grid=grid)
    for h in hooks:
        h.remove()
    h, it = x_new, iter(outputs)
    for block in trunk.blocks:
        n_attn = len(getattr(block, "attns", [None]))
        mod = block.adaLN_modulation(c_new)[:, None].chunk(3 * (n_attn + 1), dim=-1)
        gates = [mod[3 * k + 2] for k in range(n_attn)] + [mod[-1]]  # (shift, scale, gate) per branch
        for gate in gates:
            h = h + gate * next(it)
    return trunk.final_layer(h, c_new)


@torch.no_grad()
@pytest.mark.parametrize("kwargs, grid", [({}, None), ({"factorised_blocks": (1,)}, (1, 2, 3))])
def test_reused_step_matches_slow_reference(kwargs, grid):
    trunk = _trunk(**kwargs)
    x1, x2, c1, c2 = torch.randn(2, 6, 12), torch.randn(2, 6, 12), torch.randn(2, 12), torch.randn(2, 12)
    with branch_caching(trunk, 2):
        first = trunk(x1, c1, grid=grid)  # refresh
        second = trunk(x2, c2, grid=grid)  # reuse
        third = trunk(x2, c2, grid=grid)  # refresh again
    torch.testing.assert_close(first, trunk(x1, c1, grid=grid))
    torch.testing.assert_close(third, trunk(x2, c2, grid=grid))
    torch.testing.assert_close(second, _reference_reuse(trunk, x1, c1, x2, c2, grid))
    assert not torch.allclose(second, trunk(x2, c2, grid=grid), atol=1e-3)  # reuse is an approximation


@torch.no_grad()
def test_interval_one_is_exact_and_cache_is_removed_afterwards():
    trunk = _trunk()
    x, c = torch.randn(2, 5, 12), torch.randn(2, 12)
    with branch_caching(trunk, 1) as cache:
        out = [trunk(x + i, c) for i in range(3)]
    assert cache is None
    for i, o in enumerate(out):
        torch.testing.assert_close(o, trunk(x + i, c))
    with pytest.raises(RuntimeError), branch_caching(trunk, 2):
        raise RuntimeError("boom")
    assert trunk.branch_cache is None


@torch.no_grad()
def test_branches_run_once_per_refresh():
    trunk, calls = _trunk(), []
    trunk.blocks[0].attn.register_forward_hook(lambda *_: calls.append("attn"))
    with branch_caching(trunk, 3):
        for _ in range(7):
            trunk(torch.randn(1, 4, 12), torch.randn(1, 12))
    assert len(calls) == 3  # calls 0, 3, 6


@torch.no_grad()
def test_new_batch_size_recomputes():
    trunk = _trunk()
    x, c = torch.randn(3, 4, 12), torch.randn(3, 12)
    with branch_caching(trunk, 4):
        trunk(torch.randn(2, 4, 12), torch.randn(2, 12))
        out = trunk(x, c)  # a reuse call, but nothing stored fits a batch of 3
    torch.testing.assert_close(out, trunk(x, c))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_interval(bad):
    with pytest.raises(ValueError, match="interval must be an int >= 1"):
        BranchCache(bad)


def test_one_trunk_only():
    two = torch.nn.ModuleList([_trunk(), _trunk()])
    with pytest.raises(ValueError, match="has 2"), branch_caching(two, 2):
        pass


@torch.no_grad()
def test_video_sampling_with_reuse_keeps_the_given_frames_exactly():
    from dit3d.models import VideoDiT, sample_videos, task_mask
    from dit3d.objectives import GaussianDiffusion
    from dit3d.testing import randomize_

    net = randomize_(VideoDiT("DiT-Mini", patch_size=4, num_frames=4, image_size=8, depth=2, hidden_size=24,
                              num_heads=4), std=0.1)
    context = torch.rand(2, 1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    given = task_mask("predict", net.tokenizer.grid_size, 1)
    draw = lambda k: sample_videos(net, GaussianDiffusion(20), 2, context, given, steps=6, eta=1.0,  # noqa: E731
                                   generator=torch.Generator().manual_seed(0), cache_interval=k)
    cached, full = draw(3), draw(1)
    known = net.tokenizer.tokens_to_video(given.expand(2, -1)).expand_as(cached)
    assert torch.equal(cached[known], context[known])
    assert not torch.allclose(cached[~known], full[~known], atol=1e-4)
    assert net.dit.trunk.branch_cache is None
