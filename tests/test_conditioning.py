import math

import pytest
import torch

from dit3d.nn import LabelEmbedder, TimestepEmbedder, initialize_weights, timestep_embedding


def test_timestep_embedding_matches_formula():
    t = torch.tensor([0.0, 3.0, 999.0])
    emb = timestep_embedding(t, 8)
    freqs = [10000 ** (-i / 4) for i in range(4)]
    expected = [[math.cos(ti * f) for f in freqs] + [math.sin(ti * f) for f in freqs] for ti in t.tolist()]
    assert torch.allclose(emb, torch.tensor(expected), atol=1e-5)
    assert timestep_embedding(t, 7).shape == (3, 7)
    assert torch.all(timestep_embedding(t, 7)[:, -1] == 0)


def test_integer_steps_and_scaled_continuous_times_agree():
    """A flow-matching time t in [0, 1] with time_scale=1000 embeds like DDPM step 1000 t."""
    ddpm = TimestepEmbedder(16, frequency_size=32)
    fm = TimestepEmbedder(16, frequency_size=32, time_scale=1000.0)
    fm.load_state_dict(ddpm.state_dict())
    steps = torch.tensor([0, 250, 999])
    assert torch.allclose(ddpm(steps), fm(steps.float() / 1000), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        ddpm(torch.zeros(2, 1))


def test_label_embedder_null_class_and_dropout():
    emb = LabelEmbedder(num_classes=3, hidden_size=4, dropout_prob=0.5)
    initialize_weights(emb)
    labels = torch.tensor([0, 1, 2] * 200)
    g = torch.Generator().manual_seed(0)
    dropped = emb.drop_labels(labels, g)
    frac = (dropped == emb.null_class).float().mean().item()
    assert 0.42 < frac < 0.58
    assert torch.equal(dropped[dropped != 3], labels[dropped != 3])
    emb.eval()  # no dropout at eval; force_drop selects the null row
    out = emb(torch.tensor([0, 1]), force_drop=torch.tensor([True, False]))
    assert torch.equal(out[0], emb.embedding_table.weight[3])
    assert torch.equal(out[1], emb.embedding_table.weight[1])


@pytest.mark.parametrize("labels", [torch.tensor([4]), torch.tensor([-1]), torch.tensor([0.5])])
def test_label_embedder_rejects_bad_labels(labels):
    with pytest.raises(ValueError, match="labels"):
        LabelEmbedder(3, 4)(labels)
