import pytest
import torch

from dit3d.nn import make_norm


def test_norms_without_affine():
    x = torch.randn(3, 8) * 5 + 2
    ln, rms = make_norm("layernorm", 8), make_norm("rmsnorm", 8)
    assert ln.weight is None and rms.weight is None
    assert torch.allclose(ln(x).mean(-1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(rms(x).square().mean(-1), torch.ones(3), atol=1e-4)


def test_unknown_norm():
    with pytest.raises(ValueError, match="unknown norm 'batchnorm'"):
        make_norm("batchnorm", 4)
