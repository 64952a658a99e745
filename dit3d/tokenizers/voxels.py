r"""DiT-3D's voxel tokenizer: point clouds <-> voxel grids <-> 3-D patch tokens.

Coordinate convention (Mo et al. 2023, Sec. 3.2). Per shape, with :math:`\mu` the mean of
its ``N`` points and :math:`R = \max_i \lVert x_i - \mu \rVert` its radius,

.. math::
    u_i = \frac{x_i - \mu}{2R + \varepsilon} + \tfrac12 \in [0, 1]^3, \qquad
    s_i = \mathrm{clamp}(r\,u_i,\ 0,\ r - 1), \qquad
    v_i = \mathrm{round}(s_i) \in \{0, \dots, r-1\}^3 .

``s`` are continuous voxel coordinates: voxel ``k`` (per axis) has its centre at
``s = k``, so ``round(s)`` is the nearest centre. Voxelization averages point features
per voxel, :math:`G[v] = \frac{1}{|\{i: v_i = v\}|} \sum_{i: v_i = v} f_i` (empty voxels
are zero); devoxelization trilinearly interpolates a grid at the same ``s``. The
coordinates carry no gradient: gradients reach the features, never the assignment.

Grids are ``(B, C, r, r, r)`` with axes ``(x, y, z)`` after the channel; tokens are the
``p^3`` patches of a grid, flattened row-major over the patch grid (the order of
:func:`dit3d.nn.sincos_3d` and of window attention), each token's features ordered
``(p_x, p_y, p_z, C)``. The paper's patch embedding, a ``Conv3d`` with kernel = stride
= ``p``, is exactly a ``Linear`` applied to :func:`patchify`'s tokens (weight
``W_lin = W_conv.permute(0, 2, 3, 4, 1).reshape(D, -1)``); :class:`VoxelTokenizer`
produces those tokens, and the denoiser's input ``Linear`` embeds them.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_points(points: Tensor, name: str = "points") -> None:
    if not isinstance(points, Tensor) or not points.is_floating_point():
        what = f"a {points.dtype} tensor" if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"{name} must be a floating-point torch.Tensor (B, N, 3), got {what}; "
                         "convert with torch.as_tensor(x, dtype=torch.float32)")
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {tuple(points.shape)}")
    if points.shape[1] == 0:
        raise ValueError(f"{name} has no points (N = 0); every cloud needs at least one point")
    if not torch.isfinite(points).all():
        raise ValueError(f"{name} contain NaN or inf; check the data pipeline and the noise schedule")


@torch.no_grad()
def voxel_coords(points: Tensor, resolution: int, eps: float = 1e-6) -> Tensor:
    r"""Continuous voxel coordinates :math:`s = \mathrm{clamp}(r u, 0, r-1)` of each point.

    Args:
        points: point clouds, centred and scaled per shape inside.
        resolution: voxels per axis ``r``.
        eps: added to :math:`2R` so a cloud of identical points maps to the centre.

    Shapes:
        points: ``(B, N, 3)`` -> ``(B, N, 3)``, no gradient

    Raises:
        ValueError: not a floating-point tensor ``(B, N, 3)``, no points, NaN/inf, or a
            cloud too large for its dtype.
    """
    _check_points(points)
    centred = points - points.mean(dim=1, keepdim=True)  # (B, N, 3)
    radius = centred.norm(dim=-1).amax(dim=1)[:, None, None]  # (B, 1, 1)
    if not torch.isfinite(radius).all():
        raise ValueError(f"points are too large for {points.dtype}: a cloud's radius overflows; rescale the clouds")
    u = centred / (2 * radius + eps) + 0.5  # (B, N, 3) in [0, 1]
    return (u * resolution).clamp(0, resolution - 1)  # (B, N, 3)


def voxelize(features: Tensor, coords: Tensor, resolution: int) -> Tensor:
    """Average point features into the voxel nearest to each point (``round(coords)``).

    Differentiable in ``features`` (sums by ``index_add``); ``coords`` only pick voxels.

    Shapes:
        features: ``(B, N, C)``; coords: ``(B, N, 3)`` in ``[0, r-1]`` -> ``(B, C, r, r, r)``
    """
    if features.dim() != 3:
        raise ValueError(f"features must have shape (B, N, C), got {tuple(features.shape)}")
    B, N, C = features.shape
    if coords.shape != (B, N, 3):
        raise ValueError(f"coords must have shape (B, N, 3) = {(B, N, 3)}, got {tuple(coords.shape)}")
    r = resolution
    v = coords.detach().round().long().clamp(0, r - 1)  # (B, N, 3)
    flat = (v[..., 0] * r + v[..., 1]) * r + v[..., 2]  # (B, N) voxel index within a grid
    flat = (flat + torch.arange(B, device=flat.device)[:, None] * r**3).reshape(-1)  # (B*N,) over the batch
    sums = features.new_zeros(B * r**3, C).index_add(0, flat, features.reshape(B * N, C))  # (B*r^3, C)
    counts = torch.bincount(flat, minlength=B * r**3).clamp(min=1).to(features.dtype)  # (B*r^3,)
    grid = (sums / counts[:, None]).reshape(B, r, r, r, C)  # (B, r, r, r, C)
    return grid.permute(0, 4, 1, 2, 3).contiguous()  # (B, C, r, r, r)


def devoxelize(grid: Tensor, coords: Tensor) -> Tensor:
    r"""Trilinear interpolation of a grid at continuous voxel coordinates.

    With :math:`k = \lfloor s \rfloor` and :math:`f = s - k` per axis,
    :math:`\hat F(s) = \sum_{d \in \{0,1\}^3} \prod_a (f_a^{d_a} (1-f_a)^{1-d_a})\, G[k + d]`,
    so :math:`\hat F(k) = G[k]` at voxel centres. Implemented with
    :func:`torch.nn.functional.grid_sample` (``align_corners=True``: normalised -1 and
    +1 are the centres of the first and last voxel, ``g = 2 s / (r - 1) - 1``; its last
    coordinate axis indexes the grid's last dimension, hence the ``(z, y, x)`` flip).

    Shapes:
        grid: ``(B, C, r, r, r)``; coords: ``(B, N, 3)`` in ``[0, r-1]`` -> ``(B, N, C)``
    """
    if grid.dim() != 5 or not grid.shape[2] == grid.shape[3] == grid.shape[4]:
        raise ValueError(f"grid must have shape (B, C, r, r, r), got {tuple(grid.shape)}")
    B, r = grid.shape[0], grid.shape[-1]
    if coords.dim() != 3 or coords.shape[0] != B or coords.shape[-1] != 3:
        raise ValueError(f"coords must have shape ({B}, N, 3), got {tuple(coords.shape)}")
    g = coords.detach().flip(-1) * (2.0 / max(r - 1, 1)) - 1.0  # (B, N, 3) as (z, y, x) in [-1, 1]
    out = F.grid_sample(grid, g[:, None, None].to(grid.dtype), mode="bilinear", padding_mode="border",
                        align_corners=True)  # (B, C, 1, 1, N)
    return out[:, :, 0, 0].transpose(1, 2)  # (B, N, C)


def patchify(grid: Tensor, patch_size: int) -> Tensor:
    """Cut a cubic grid into ``p^3`` patches, one token each.

    Shapes:
        grid: ``(B, C, r, r, r)`` -> ``(B, (r/p)^3, p^3 * C)``
    """
    p = patch_size
    if grid.dim() != 5 or not grid.shape[2] == grid.shape[3] == grid.shape[4] or grid.shape[-1] % p:
        raise ValueError(f"patchify needs a cubic grid (B, C, r, r, r) with r divisible by {p}, "
                         f"got {tuple(grid.shape)}")
    B, C, g = grid.shape[0], grid.shape[1], grid.shape[-1] // p
    x = grid.reshape(B, C, g, p, g, p, g, p)  # (B, C, gx, px, gy, py, gz, pz)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, gx, gy, gz, px, py, pz, C)
    return x.reshape(B, g**3, p**3 * C)


def unpatchify(tokens: Tensor, patch_size: int, channels: int) -> Tensor:
    """Inverse of :func:`patchify`.

    Shapes:
        tokens: ``(B, g^3, p^3 * C)`` -> ``(B, C, g p, g p, g p)``
    """
    if tokens.dim() != 3:
        raise ValueError(f"tokens must have shape (B, T, p^3 * C), got {tuple(tokens.shape)}")
    B, T, width = tokens.shape
    p, C = patch_size, channels
    g = round(T ** (1 / 3))
    if g**3 != T or width != p**3 * C:
        raise ValueError(f"tokens must have shape (B, g^3, {p**3 * C}) for patch {p} and {C} channels, "
                         f"got {tuple(tokens.shape)}")
    x = tokens.reshape(B, g, g, g, p, p, p, C)  # (B, gx, gy, gz, px, py, pz, C)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, gx, px, gy, py, gz, pz)
    return x.reshape(B, C, g * p, g * p, g * p)


class VoxelTokenizer(nn.Module):
    """Point clouds to 3-D patch tokens and token predictions back to per-point values.

    ``encode`` voxelizes the cloud's own coordinates (the features of DiT-3D) and cuts the
    grid into patches; ``decode`` reassembles a grid from per-token predictions and
    interpolates it at the points' voxel coordinates. No parameters.

    Args:
        resolution: voxels per axis ``r`` (32 in DiT-3D).
        patch_size: patch edge ``p`` in voxels; must divide ``r`` (2, 4 or 8 in DiT-3D).

    Shapes:
        encode: points ``(B, N, 3)`` -> tokens ``(B, T, 3 p^3)``, coords ``(B, N, 3)``
        with ``T = (r/p)^3``; decode: tokens ``(B, T, 3 p^3)``, coords -> ``(B, N, 3)``

    Example:
        >>> tok = VoxelTokenizer(resolution=32, patch_size=4)
        >>> tokens, coords = tok.encode(torch.randn(2, 100, 3))
        >>> tokens.shape, tok.grid_size, tok.decode(tokens, coords).shape
        (torch.Size([2, 512, 192]), (8, 8, 8), torch.Size([2, 100, 3]))
    """

    def __init__(self, resolution: int = 32, patch_size: int = 4) -> None:
        super().__init__()
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (resolution, patch_size)) or (
                resolution < 2 or patch_size < 1 or resolution % patch_size):
            raise ValueError(f"patch_size {patch_size} must divide resolution {resolution} (>= 2); "
                             "e.g. resolution 32 with patch 2, 4 or 8")
        self.resolution, self.patch_size = resolution, patch_size

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Tokens per axis of the patch grid."""
        g = self.resolution // self.patch_size
        return (g, g, g)

    @property
    def token_dim(self) -> int:
        """Features per token, ``3 p^3`` (three coordinates per voxel)."""
        return 3 * self.patch_size**3

    def encode(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens and voxel coordinates of clouds; raises ValueError as :func:`voxel_coords`."""
        coords = voxel_coords(points, self.resolution)  # (B, N, 3)
        grid = voxelize(points, coords, self.resolution)  # (B, 3, r, r, r)
        return patchify(grid, self.patch_size), coords  # (B, T, p^3*3), (B, N, 3)

    def decode(self, tokens: Tensor, coords: Tensor) -> Tensor:
        grid = unpatchify(tokens, self.patch_size, 3)  # (B, 3, r, r, r)
        return devoxelize(grid, coords)  # (B, N, 3)
