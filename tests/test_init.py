import math

import torch
from torch import nn

from dit3d.nn import DiTTrunk, LabelEmbedder, TimestepEmbedder, initialize_weights


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = TimestepEmbedder(64, frequency_size=256)
        self.y = LabelEmbedder(1000, 64)
        self.trunk = DiTTrunk(2, 64, 4, out_dim=6)
        initialize_weights(self)


def test_every_stated_initialisation():
    torch.manual_seed(0)
    m = Model()
    qkv = m.trunk.blocks[0].attn.qkv
    bound = math.sqrt(6 / (qkv.in_features + qkv.out_features))  # Xavier-uniform
    assert qkv.weight.abs().max() <= bound and qkv.weight.abs().max() > 0.9 * bound
    assert torch.all(qkv.bias == 0)
    assert abs(m.t.mlp[0].weight.std().item() - 0.02) < 0.002
    assert abs(m.y.embedding_table.weight.std().item() - 0.02) < 0.002
    for block in m.trunk.blocks:
        assert torch.all(block.adaLN_modulation[-1].weight == 0)
        assert torch.all(block.adaLN_modulation[-1].bias == 0)
    assert torch.all(m.trunk.final_layer.linear.weight == 0)
    assert torch.all(m.trunk.final_layer.adaLN_modulation[-1].weight == 0)
