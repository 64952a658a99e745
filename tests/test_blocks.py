import pytest
import torch

from dit3d.nn import DiTBlock, DiTTrunk, FinalLayer, Mlp, initialize_weights, modulate
from dit3d.testing import randomize_


def test_modulate():
    x = torch.ones(1, 2, 3)
    assert torch.equal(modulate(x, torch.full((1, 1, 3), 2.0), torch.full((1, 1, 3), 0.5)), torch.full((1, 2, 3), 3.5))


def test_block_uses_six_modulations_and_layernorm_without_affine():
    block = DiTBlock(12, 3)
    assert block.adaLN_modulation[1].out_features == 6 * 12
    assert block.norm1.weight is None and block.norm2.weight is None
    assert block.mlp.fc1.out_features == 48  # MLP ratio 4


def test_zero_init_block_is_identity_and_gates_control_the_update():
    block = DiTBlock(12, 3)
    initialize_weights(block)
    x, c = torch.randn(2, 4, 12), torch.randn(2, 12)
    assert torch.equal(block(x, c), x)
    randomize_(block)
    assert not torch.allclose(block(x, c), x)
    # conditioning matters: a different c changes the output
    assert not torch.allclose(block(x, c), block(x, c + 1))


def test_final_layer_zero_at_init():
    layer = FinalLayer(12, 5)
    initialize_weights(layer)
    assert torch.equal(layer(torch.randn(2, 3, 12), torch.randn(2, 12)), torch.zeros(2, 3, 5))


def test_mlp_activation_is_dits_tanh_gelu_or_the_exact_one():
    x = torch.linspace(-6, 6, 1201)[:, None].expand(-1, 4)
    tanh_mlp, exact_mlp = Mlp(4, 4), Mlp(4, 4, act="gelu")
    for mlp in (tanh_mlp, exact_mlp):  # identity layers expose the activation itself
        for fc in (mlp.fc1, mlp.fc2):
            fc.weight.data.copy_(torch.eye(4))
            fc.bias.data.zero_()
    assert torch.allclose(tanh_mlp(x), 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x ** 3))),
                          atol=1e-6)
    assert torch.allclose(exact_mlp(x), 0.5 * x * (1 + torch.erf(x / 2 ** 0.5)), atol=1e-6)
    gap = (tanh_mlp(x) - exact_mlp(x)).abs().max().item()
    assert 1e-4 < gap < 5e-4  # the documented bound: at most 4.7e-4 apart
    with pytest.raises(ValueError, match="unknown MLP activation 'relu'.*gelu"):
        Mlp(4, 4, act="relu")


def test_trunk_passes_the_activation_to_every_block_kind():
    trunk = DiTTrunk(depth=2, hidden_size=12, num_heads=3, factorised_blocks=[1], mlp_act="gelu")
    assert [b.mlp.act.approximate for b in trunk.blocks] == ["none", "none"]
    assert [b.mlp.act.approximate for b in DiTTrunk(depth=2, hidden_size=12, num_heads=3).blocks] == ["tanh", "tanh"]
