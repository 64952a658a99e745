import pytest
import torch

from dit3d.nn import DiT
from dit3d.objectives import FlowMatching
from dit3d.testing import randomize_


def test_dit_shapes_labels_and_self_condition():
    m = DiT(8, time_scale=1000.0, preset="DiT-Mini", depth=2, num_classes=2, self_condition=True)
    x, t, mask = torch.randn(3, 6, 8), torch.rand(3), torch.ones(3, 6, dtype=torch.bool)
    assert m(x, t, torch.tensor([0, 1, 2]), mask).abs().max() == 0  # zero output at init
    randomize_(m)
    m.eval()
    out_sc = m(x, t, torch.tensor([0, 1, 2]), mask, self_cond=torch.randn(3, 6, 8))
    assert out_sc.shape == (3, 6, 8)
    assert not torch.allclose(m(x, t, torch.tensor([0, 0, 0])), m(x, t, torch.tensor([1, 1, 1])))
    # missing labels mean the null class
    assert torch.equal(m(x, t), m(x, t, torch.tensor([2, 2, 2])))


def test_dit_trains_with_flow_matching_through_the_objective():
    torch.manual_seed(0)
    m = DiT(4, time_scale=1000.0, preset="DiT-Mini", depth=2, self_condition=True)
    fm = FlowMatching(self_condition_prob=0.5)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    data = torch.randn(32, 5, 4) * 0.1 + 2.0
    mask = torch.arange(5)[None] < torch.randint(2, 6, (32, 1))
    losses = []
    for _ in range(60):
        loss = fm.training_loss(m, data, mask=mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_dit_bad_inputs():
    m = DiT(4, time_scale=1000.0, preset="DiT-Mini", depth=1)
    with pytest.raises(ValueError, match=r"\(B, T, 4\)"):
        m(torch.randn(2, 3, 5), torch.rand(2))
    with pytest.raises(ValueError, match="unconditional"):
        m(torch.randn(2, 3, 4), torch.rand(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="self_condition=False"):
        m(torch.randn(2, 3, 4), torch.rand(2), self_cond=torch.randn(2, 3, 4))


def test_dit_adds_position_rows_and_refuses_too_many_tokens():
    table = torch.randn(4, 96)
    with_pos = randomize_(DiT(3, time_scale=1.0, preset="DiT-Mini", pos_embed=table))
    without = DiT(3, time_scale=1.0, preset="DiT-Mini")
    without.load_state_dict(with_pos.state_dict())  # the table is a non-persistent buffer
    x, t = torch.randn(2, 3, 3), torch.zeros(2)
    assert not torch.allclose(with_pos(x, t), without(x, t))  # rows 0-2 of the table were added
    with pytest.raises(ValueError, match="6 tokens but pos_embed has rows for 4"):
        with_pos(torch.randn(1, 6, 3), torch.zeros(1))


def test_dit_token_labels_condition_each_token():
    m = randomize_(DiT(3, time_scale=1000.0, preset="DiT-Mini", depth=1, token_classes=5)).eval()
    x, t = torch.randn(2, 4, 3), torch.rand(2)
    labels = torch.tensor([[1, 2, 3, 0], [4, 4, 1, 0]])
    out = m(x, t, token_labels=labels)
    assert out.shape == (2, 4, 3)
    other = labels.clone()
    other[0, 0] = 2
    assert not torch.allclose(m(x, t, token_labels=other)[0], out[0])  # a token's label reaches its output
    assert torch.equal(m(x, t, token_labels=other)[1], out[1])  # and no other sample's
    perm = torch.tensor([2, 0, 3, 1])  # no positions: equivariant to permuting tokens with their labels
    torch.testing.assert_close(m(x[:, perm], t, token_labels=labels[:, perm]), out[:, perm], atol=1e-5, rtol=1e-5)
    assert m.config["token_classes"] == 5
    assert "token_classes" not in DiT(3, time_scale=1.0, preset="DiT-Mini").config


def test_dit_token_labels_bad_inputs():
    m = DiT(3, time_scale=1.0, preset="DiT-Mini", depth=1, token_classes=5)
    x, t = torch.randn(2, 4, 3), torch.rand(2)
    with pytest.raises(ValueError, match="pass token_labels"):
        m(x, t)
    with pytest.raises(ValueError, match=r"must be \(2, 4\) long"):
        m(x, t, token_labels=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.4"):
        m(x, t, token_labels=torch.full((2, 4), 5))
    with pytest.raises(ValueError, match="token_classes=0"):
        DiT(3, time_scale=1.0, preset="DiT-Mini", depth=1)(x, t, token_labels=torch.zeros(2, 4, dtype=torch.long))
