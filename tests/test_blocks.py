import torch

from dit3d.nn import DiTBlock, FinalLayer, initialize_weights, modulate
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
