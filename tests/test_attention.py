import pytest
import torch

from dit3d.nn import Attention, key_padding_to_attn_mask
from dit3d.testing import randomize_, reference_attention


def test_full_attention_matches_reference_with_padding():
    attn = randomize_(Attention(16, 2, qk_norm=True), std=0.3)
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    allowed = mask[:, None, :].expand(2, 5, 5)
    fast = attn(x, mask)
    slow = reference_attention(attn, x, allowed).float()
    assert torch.allclose(fast, slow, atol=1e-5)


def test_all_padding_sample_gives_no_nan():
    attn = randomize_(Attention(8, 2))
    mask = torch.zeros(1, 4, dtype=torch.bool)
    assert torch.isfinite(attn(torch.randn(1, 4, 8), mask)).all()
    assert key_padding_to_attn_mask(mask).all()


def test_bad_configs_and_missing_grid():
    with pytest.raises(ValueError, match="divisible"):
        Attention(10, 3)
    with pytest.raises(ValueError, match="grid"):
        Attention(8, 2, window_size=(2,))(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="unknown norm"):
        Attention(8, 2, qk_norm=True, norm="batchnorm")
