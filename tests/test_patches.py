"""2-D (and N-D) patch tokenizers: exact round trips, token order, Conv2d equivalence, errors."""
import pytest
import torch

from dit3d.nn import sincos_2d
from dit3d.tokenizers import PatchTokenizer2D, patchify_2d, patchify_grid, unpatchify_2d, unpatchify_grid


def images(B: int, C: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("patch", [1, 2, 4, 8])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_is_exact_at_16_32_64(size, patch, channels):
    x = images(2, channels, size, size, seed=size + patch)
    tokens = patchify_2d(x, patch)
    g = size // patch
    assert tokens.shape == (2, g * g, patch * patch * channels)
    assert torch.equal(unpatchify_2d(tokens, (g, g), patch, channels), x)
    tok = PatchTokenizer2D(size, patch, channels)
    assert tok.grid_size == (g, g) and tok.num_tokens == g * g and tok.token_dim == patch * patch * channels
    assert torch.equal(tok.decode(tok.encode(x)), x)


def test_rectangular_images_and_patches():
    x = images(3, 2, 12, 20)
    tokens = patchify_2d(x, (3, 4))  # 4 x 5 patches of 3 x 4 pixels
    assert tokens.shape == (3, 20, 24)
    assert torch.equal(unpatchify_2d(tokens, (4, 5), (3, 4), 2), x)
    tok = PatchTokenizer2D((12, 20), (3, 4), channels=2)
    assert tok.grid_size == (4, 5) and torch.equal(tok.decode(tok.encode(x)), x)


def test_tokens_run_row_major_with_channel_last_features():
    x = images(1, 3, 8, 12)
    p = 4
    tokens = patchify_2d(x, p)  # grid (2, 3)
    for gh in range(2):
        for gw in range(3):
            patch = x[0, :, gh * p:(gh + 1) * p, gw * p:(gw + 1) * p]  # (C, p, p)
            assert torch.equal(tokens[0, gh * 3 + gw], patch.permute(1, 2, 0).reshape(-1))  # (p_h, p_w, C)


def test_linear_on_tokens_equals_conv2d_patch_embedding():
    """DiT's patch embedding (Conv2d, kernel = stride = p) is a Linear on these tokens."""
    torch.manual_seed(0)
    C, D, p = 3, 8, 4
    conv = torch.nn.Conv2d(C, D, p, stride=p)
    x = images(2, C, 16, 16)
    ref = conv(x).flatten(2).transpose(1, 2)  # (B, T, D), tokens row-major
    w = conv.weight.permute(0, 2, 3, 1).reshape(D, -1)
    out = patchify_2d(x, p) @ w.T + conv.bias
    assert torch.allclose(out, ref, atol=1e-5)


def test_token_order_matches_the_2d_sincos_table():
    """Token k of patchify is patch (k // g_w, k % g_w): the row/column sincos_2d encodes."""
    g_h, g_w, D = 3, 5, 16
    table = sincos_2d((g_h, g_w), D)
    x = torch.zeros(1, 1, g_h, g_w)
    x[0, 0, 2, 1] = 1.0  # patch size 1: one token per pixel
    k = int(patchify_2d(x, 1)[0, :, 0].argmax())
    assert k == 2 * g_w + 1
    assert torch.equal(table[k, : D // 2], sincos_2d((g_h, g_w), D)[2 * g_w, : D // 2])  # row 2 half
    assert torch.equal(table[k, D // 2:], table[1, D // 2:])  # column 1 half


@pytest.mark.parametrize("shape,patch", [((2, 3, 8, 16, 16), (2, 4, 4)), ((2, 1, 4, 8, 8), 2), ((3, 2, 12), 3)])
def test_nd_grids_round_trip(shape, patch):
    """Video-style (B, C, T, H, W) tubelets and 1-D sequences use the same code."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    n = len(shape) - 2
    p = (patch,) * n if isinstance(patch, int) else patch
    grid = tuple(s // q for s, q in zip(shape[2:], p))
    tokens = patchify_grid(x, patch)
    assert tokens.shape[1] == torch.Size(grid).numel()
    assert torch.equal(unpatchify_grid(tokens, grid, patch, shape[1]), x)


def test_gradients_pass_through_unchanged():
    x = images(2, 3, 8, 8).requires_grad_()
    g = torch.randn(2, 16, 12)
    (patchify_2d(x, 2) * g).sum().backward()
    assert torch.equal(x.grad, unpatchify_2d(g, (4, 4), 2, 3))


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="must divide the grid size"):
        patchify_2d(images(1, 3, 16, 16), 3)
    with pytest.raises(ValueError, match="must divide the grid size"):
        patchify_2d(images(1, 3, 16, 12), 8)
    with pytest.raises(ValueError, match=r"channels-first \(B, C, H, W\)"):
        patchify_2d(torch.zeros(16, 16), 2)
    with pytest.raises(ValueError, match="positive int"):
        patchify_2d(images(1, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="2 positive ints"):
        patchify_2d(images(1, 1, 8, 8), (2, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 16, 12\)"):
        unpatchify_2d(torch.zeros(1, 15, 12), (4, 4), 2, 3)
    with pytest.raises(ValueError, match="must divide image_size"):
        PatchTokenizer2D(16, 5)
    with pytest.raises(ValueError, match="build the model for the image size"):
        PatchTokenizer2D(16, 2, 1).encode(images(1, 1, 32, 32))
