"""DiT-3D voxel tokenizer: voxel means, trilinear devoxelization, patches, gradients."""
import math

import pytest
import torch

from dit3d.tokenizers import VoxelTokenizer, devoxelize, patchify, unpatchify, voxel_coords, voxelize


def slow_devoxelize(grid: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation, one point and one corner at a time (voxel k centred at s = k)."""
    B, C, r = grid.shape[:2] + grid.shape[-1:]
    out = torch.zeros(B, coords.shape[1], C, dtype=torch.float64)
    for b in range(B):
        for n in range(coords.shape[1]):
            s = coords[b, n].double()
            k = s.floor().long()
            f = s - k
            for dx in (0, 1):
                for dy in (0, 1):
                    for dz in (0, 1):
                        w = 1.0
                        idx = []
                        for a, d in enumerate((dx, dy, dz)):
                            w *= float(f[a]) if d else 1.0 - float(f[a])
                            idx.append(min(int(k[a]) + d, r - 1))
                        out[b, n] += w * grid[b, :, idx[0], idx[1], idx[2]].double()
    return out


def all_centres(r: int) -> torch.Tensor:
    axes = torch.meshgrid(*[torch.arange(r, dtype=torch.float32)] * 3, indexing="ij")
    return torch.stack(axes, -1).reshape(1, -1, 3)  # (1, r^3, 3)


def test_voxel_coords_centre_and_scale_per_shape():
    pts = torch.tensor([[[-1.0, 0, 0], [1.0, 0, 0]], [[5.0, 5, 5], [5.0, 5, 7]]])  # second: shifted and scaled
    s = voxel_coords(pts, resolution=4)
    # u = (x - mean) / (2R) + 1/2, s = clamp(4u, 0, 3)
    assert torch.allclose(s[0], torch.tensor([[0.0, 2, 2], [3.0, 2, 2]]), atol=1e-4)
    assert torch.allclose(s[1], torch.tensor([[2.0, 2, 0], [2.0, 2, 3]]), atol=1e-4)
    assert not s.requires_grad


def test_voxel_means_on_a_hand_example():
    coords = torch.tensor([[[0.0, 0, 0], [0.2, 0.4, 0.1], [3, 3, 3], [1.6, 0, 2.4]]])  # voxels 000, 000, 333, 202
    feats = torch.tensor([[[1.0, 2], [3.0, 4], [5.0, 6], [7.0, 8]]])
    grid = voxelize(feats, coords, resolution=4)
    assert grid.shape == (1, 2, 4, 4, 4)
    assert grid[0, :, 0, 0, 0].tolist() == [2.0, 3.0]  # mean of the first two points
    assert grid[0, :, 3, 3, 3].tolist() == [5.0, 6.0]
    assert grid[0, :, 2, 0, 2].tolist() == [7.0, 8.0]
    assert grid.abs().sum() == 2 + 3 + 5 + 6 + 7 + 8  # every other voxel is empty: zero


def test_devoxelize_equals_slow_reference():
    g = torch.Generator().manual_seed(0)
    r = 5
    grid = torch.randn(2, 3, r, r, r, generator=g)
    coords = torch.rand(2, 20, 3, generator=g) * (r - 1)
    coords[0, :4] = torch.tensor([[0.0, 0, 0], [4, 4, 4], [4, 0, 2.5], [1, 2, 3]])  # edges and centres
    fast = devoxelize(grid, coords)
    assert fast.shape == (2, 20, 3)
    assert torch.allclose(fast.double(), slow_devoxelize(grid, coords), atol=1e-5)
    assert torch.allclose(fast[0, 3], grid[0, :, 1, 2, 3])  # a voxel centre returns that voxel


def test_devoxelize_of_voxelize_reproduces_constant_and_linear_fields():
    r = 4
    g = torch.Generator().manual_seed(1)
    centres = all_centres(r)  # every voxel occupied
    extra = torch.rand(1, 30, 3, generator=g) * (r - 1)
    coords = torch.cat([centres, extra], dim=1)
    const = torch.full((1, coords.shape[1], 2), 0.7)
    assert torch.allclose(devoxelize(voxelize(const, coords, r), coords), const, atol=1e-6)
    # a linear field sampled at the centres is rebuilt exactly anywhere (catches axis flips)
    a = torch.tensor([1.0, -2.0, 0.5])
    grid = voxelize((centres * a).sum(-1, keepdim=True), centres, r)  # (1, 1, r, r, r)
    assert torch.allclose(devoxelize(grid, extra), (extra * a).sum(-1, keepdim=True), atol=1e-5)


def test_gradients_reach_features_not_coordinates():
    coords = (torch.rand(2, 40, 3) * 7).requires_grad_(True)
    feats = torch.randn(2, 40, 3, requires_grad=True)
    grid = voxelize(feats, coords, resolution=8).requires_grad_(True)
    out = devoxelize(grid, coords)
    (out * torch.randn_like(out)).sum().backward()
    assert coords.grad is None
    assert feats.grad is not None and feats.grad.abs().sum() > 0 and torch.isfinite(feats.grad).all()
    pts = torch.randn(2, 40, 3, requires_grad=True)
    tok = VoxelTokenizer(8, 2)
    tokens, c = tok.encode(pts)
    tok.decode(tokens, c).sum().backward()  # points -> features -> grid -> points
    assert pts.grad.abs().sum() > 0 and torch.isfinite(pts.grad).all()


@pytest.mark.parametrize("r,p", [(16, 2), (32, 4), (32, 8)])
def test_shapes_and_patch_round_trip(r, p):
    tok = VoxelTokenizer(r, p)
    tokens, coords = tok.encode(torch.randn(2, 30, 3))
    g = r // p
    assert tok.grid_size == (g, g, g) and tokens.shape == (2, g**3, 3 * p**3) == (2, g**3, tok.token_dim)
    assert tok.decode(tokens, coords).shape == (2, 30, 3)
    grid = torch.randn(2, 3, r, r, r)
    assert torch.equal(unpatchify(patchify(grid, p), p, 3), grid)


def test_token_order_is_row_major_over_the_patch_grid():
    r, p, g = 8, 2, 4
    x_index = torch.arange(r, dtype=torch.float32)[:, None, None].expand(r, r, r)
    z_index = torch.arange(r, dtype=torch.float32)[None, None, :].expand(r, r, r)
    tokens = patchify(torch.stack([x_index, z_index])[None], p)  # (1, 64, 8 * 2), channels last
    a, b, c = 3, 1, 2  # patch (x, y, z) -> token a*g*g + b*g + c
    t = tokens[0, a * g * g + b * g + c].reshape(p, p, p, 2)
    assert t[..., 0].min() == a * p and t[..., 0].max() == a * p + p - 1
    assert t[..., 1].min() == c * p and t[..., 1].max() == c * p + p - 1


def test_linear_on_patches_is_the_papers_conv3d_patch_embedding():
    p, D = 4, 12
    grid = torch.randn(2, 3, 16, 16, 16)
    conv = torch.nn.Conv3d(3, D, kernel_size=p, stride=p)
    w_lin = conv.weight.permute(0, 2, 3, 4, 1).reshape(D, -1)  # (D, p^3 * 3) in (px, py, pz, C) order
    via_linear = torch.nn.functional.linear(patchify(grid, p), w_lin, conv.bias)  # (B, T, D)
    via_conv = conv(grid).flatten(2).transpose(1, 2)  # (B, T, D)
    assert torch.allclose(via_linear, via_conv, atol=1e-4)


def test_bad_inputs_say_what_to_do():
    tok = VoxelTokenizer(8, 4)
    with pytest.raises(ValueError, match="no points"):
        tok.encode(torch.zeros(2, 0, 3))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(torch.tensor([[[math.nan, 0.0, 0.0]]]))
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        tok.encode(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="must divide"):
        VoxelTokenizer(32, 5)
    with pytest.raises(ValueError, match="tokens must have shape"):
        unpatchify(torch.zeros(1, 7, 192), 4, 3)
