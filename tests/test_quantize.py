"""Int8 dense layers of the trunk (dit3d.nn.quantize)."""
import pytest
import torch
from torch import nn

from dit3d.nn import DiT, DiTBlock, FactorisedDiTBlock
from dit3d.nn.quantize import Int8Linear, quantize_int8, quantized_layers


def reference_int8_linear(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Slow float64 reference of vector-wise absmax int8 quantization, one row at a time."""
    w = linear.weight.double()
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float64)
    sw = w.abs().amax(dim=1) / 127
    wq = torch.round(w / sw[:, None])
    for i, row in enumerate(x.double()):
        sx = row.abs().max() / 127
        xq = torch.round(row / sx)
        out[i] = (wq @ xq) * sx * sw + linear.bias.double()
    return out


def test_exact_when_values_are_already_int8_grid():
    # every weight row and input row reaches |127| and holds integers: quantization is lossless
    g = torch.Generator().manual_seed(0)
    linear = nn.Linear(16, 8)
    with torch.no_grad():
        linear.weight.copy_(torch.randint(-127, 128, (8, 16), generator=g).float())
        linear.weight[:, 0] = 127.0
        linear.bias.copy_(torch.arange(8.0))
    x = torch.randint(-127, 128, (5, 16), generator=g).float()
    x[:, 3] = -127.0
    assert torch.equal(Int8Linear(linear)(x), linear(x))


def test_matches_slow_reference_and_float():
    g = torch.Generator().manual_seed(1)
    linear = nn.Linear(24, 40)
    x = torch.randn(7, 24, generator=g)
    y = Int8Linear(linear)(x)
    torch.testing.assert_close(y.double(), reference_int8_linear(x, linear), rtol=1e-5, atol=1e-5)
    exact = linear(x)
    assert (y - exact).norm() / exact.norm() < 0.02  # int8 rounding: about 1% here


def test_shapes_dtype_zero_rows_and_no_bias():
    linear = nn.Linear(8, 4, bias=False)
    q = Int8Linear(linear)
    x = torch.zeros(2, 3, 8)
    x[0, 0] = torch.linspace(-1, 1, 8)
    y = q(x)
    assert y.shape == (2, 3, 4) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and torch.equal(y[1], torch.zeros(3, 4))  # all-zero tokens stay zero, not NaN
    assert "bias=False" in repr(q)


def test_quantize_converts_token_layers_only():
    block = DiTBlock(dim=32, num_heads=4).eval()
    assert quantize_int8(block) == 4
    assert [type(m) for m in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2)] == [Int8Linear] * 4
    assert type(block.adaLN_modulation[1]) is nn.Linear  # the gates stay in float
    fact = FactorisedDiTBlock(dim=32, num_heads=4, axes=((0,), (1, 2))).eval()
    assert quantize_int8(fact) == 2 * 2 + 2
    assert quantize_int8(block) == 0  # already converted: nothing left to do


def test_quantized_dit_close_to_float():
    torch.manual_seed(0)
    model = DiT(6, time_scale=1000.0, preset="DiT-Mini", depth=3, num_classes=3).eval()
    for p in model.parameters():  # adaLN-Zero starts as the identity; give every layer weight
        nn.init.normal_(p, std=0.1)
    x, t, y = torch.randn(2, 10, 6), torch.tensor([0.003, 0.7]), torch.tensor([0, 2])
    with torch.no_grad():
        exact = model(x, t, y)
        quantize_int8(model)
        approx = model(x, t, y)
    assert quantized_layers(model) == 12
    assert (approx - exact).norm() / exact.norm() < 0.03


def test_refuses_training_mode_and_models_without_blocks():
    with pytest.raises(ValueError, match="eval"):
        quantize_int8(DiTBlock(dim=32, num_heads=4))
    with pytest.raises(ValueError, match="no DiTBlock"):
        quantize_int8(nn.Sequential(nn.Linear(4, 4)).eval())


def test_refuses_gradients():
    q = Int8Linear(nn.Linear(4, 3))
    x = torch.randn(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        q(x)
    with torch.no_grad():
        assert q(x).shape == (2, 3)
