"""dit3d.nn.modes: eval mode for a block, frozen copies."""
import pytest
import torch
from torch import nn

from dit3d.nn import eval_mode, frozen_copy


def test_eval_mode_restores_each_network_mode_even_after_an_error():
    a, b = nn.Dropout(0.5).train(), nn.Dropout(0.5).eval()
    with pytest.raises(RuntimeError):
        with eval_mode(a, None, b):
            assert not a.training and not b.training
            raise RuntimeError("inside")
    assert a.training and not b.training


def test_frozen_copy_is_an_independent_eval_copy_without_gradients():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    copy = frozen_copy(net, "cpu")
    assert copy is not net and not copy.training and net.training
    assert not any(p.requires_grad for p in copy.parameters()) and all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert not torch.equal(copy[0].weight, net[0].weight)  # later changes to the source leave it alone
