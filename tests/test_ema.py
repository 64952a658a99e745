"""The shared EMA helper: warm-up schedule, update maths, no-EMA and mismatch cases."""
import pytest
import torch
from torch import nn

from dit3d.models.ema import ema_copy, ema_decay, update_ema_


def test_decay_warms_up_then_saturates():
    assert ema_decay(0, 0.9999) == pytest.approx(0.1)
    assert ema_decay(90, 0.9999) == pytest.approx(91 / 100)
    assert ema_decay(10**7, 0.9999) == 0.9999
    assert ema_decay(0, 0.05) == 0.05  # a small decay caps the warm-up too


def test_update_is_a_convex_combination_of_parameters_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    avg = ema_copy(net, 0.99)
    assert all(not p.requires_grad for p in avg.parameters())
    old = [p.clone() for p in avg.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net[1].running_mean.fill_(5.0)
    d = update_ema_(avg, net, step=1000, max_decay=0.99)
    assert d == 0.99
    for a, o, p in zip(avg.parameters(), old, net.parameters()):
        assert torch.allclose(a, 0.99 * o + 0.01 * p, atol=1e-6)
    assert avg[1].running_mean.abs().max() == 0  # buffers are not averaged


def test_no_ema_and_mismatched_models():
    assert ema_copy(nn.Linear(2, 2), 0.0) is None
    assert update_ema_(None, nn.Linear(2, 2), 0, 0.9) is None
    with pytest.raises(ValueError, match="ema_copy"):
        update_ema_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0, 0.9)
