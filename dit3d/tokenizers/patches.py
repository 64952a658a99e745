r"""Patch tokenizers for images (2-D) and any channels-first grid (N-D): grids <-> tokens.

A channels-first grid :math:`x \in \mathbb{R}^{B \times C \times S_1 \times \dots \times S_n}`
(an image is ``n = 2``, ``(B, C, H, W)``; a video ``n = 3``, ``(B, C, T, H, W)``) is cut
into non-overlapping patches of :math:`p_1 \times \dots \times p_n` cells, each patch one
token:

.. math::
    \mathrm{tok}[b, k, (q, c)] = x[b, c, g_1 p_1 + q_1, \dots, g_n p_n + q_n],
    \qquad k = \mathrm{rowmajor}(g_1, \dots, g_n),\ q = (q_1, \dots, q_n),

so there are :math:`T = \prod_a S_a / p_a` tokens of :math:`C \prod_a p_a` features.
Tokens run row-major over the patch grid :math:`(S_1/p_1, \dots, S_n/p_n)`, the order of
:func:`dit3d.nn.sincos_grid` and of the trunk's window attention; the features of a token
are ordered ``(q_1, ..., q_n, C)`` (channel last), as DiT's ``unpatchify`` and
:func:`dit3d.tokenizers.voxels.patchify`. DiT's patch embedding, a ``Conv2d`` with
kernel = stride = ``p``, is exactly a ``Linear`` on these tokens (weight
``W_lin = W_conv.permute(0, 2, 3, 1).reshape(D, -1)``), which is how
:class:`~dit3d.models.image_dit.ImageDiT` embeds them. Both directions are pure
reshapes and permutations: the round trip is exact, and gradients pass unchanged.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor, nn

__all__ = ["PatchTokenizer2D", "patchify_2d", "patchify_grid", "unpatchify_2d", "unpatchify_grid"]


def _as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """``p`` -> ``(p,) * n``; a sequence must have ``n`` positive ints."""
    ok = isinstance(value, numbers.Integral) or (isinstance(value, Sequence) and all(
        isinstance(v, numbers.Integral) for v in value))
    if isinstance(value, bool) or not ok:
        raise ValueError(f"{name} must be a positive int or {n} positive ints, got {value!r}")
    out = (int(value),) * n if isinstance(value, numbers.Integral) else tuple(int(v) for v in value)
    if len(out) != n or any(v < 1 for v in out):
        raise ValueError(f"{name} must be a positive int or {n} positive ints (one per grid axis), got {value!r}")
    return out


def patchify_grid(x: Tensor, patch_size: int | Sequence[int]) -> Tensor:
    """Cut a channels-first ``n``-D grid into patches, one token each (see the module doc).

    Args:
        x: grid ``(B, C, S_1, ..., S_n)``, ``n >= 1``.
        patch_size: patch edge per axis (an int for all axes); must divide each ``S_a``.

    Shapes:
        x: ``(B, C, S_1, ..., S_n)`` -> ``(B, prod(S_a / p_a), prod(p_a) * C)``

    Example:
        >>> video = torch.randn(2, 3, 8, 16, 16)                # (B, C, T, H, W)
        >>> patchify_grid(video, (2, 4, 4)).shape               # tubelets of 2 frames x 4 x 4
        torch.Size([2, 64, 96])
    """
    if x.dim() < 3:
        raise ValueError(f"patchify needs a channels-first grid (B, C, S_1, ..., S_n), got {tuple(x.shape)}")
    n = x.dim() - 2
    p = _as_tuple(patch_size, n, "patch_size")
    B, C, sizes = x.shape[0], x.shape[1], tuple(x.shape[2:])
    bad = [(s, q) for s, q in zip(sizes, p) if s % q]
    if bad:
        raise ValueError(f"patch_size {p} must divide the grid size {sizes} on every axis "
                         f"(sizes {[s for s, _ in bad]} are not multiples); resize or pad the input, "
                         f"or pick a patch size that divides it")
    g = tuple(s // q for s, q in zip(sizes, p))
    x = x.reshape(B, C, *[d for pair in zip(g, p) for d in pair])  # (B, C, g1, p1, ..., gn, pn)
    perm = (0, *range(2, 2 + 2 * n, 2), *range(3, 3 + 2 * n, 2), 1)  # (B, g1..gn, p1..pn, C)
    return x.permute(perm).reshape(B, prod(g), prod(p) * C)  # (B, T, prod(p) C)


def unpatchify_grid(tokens: Tensor, grid_size: Sequence[int], patch_size: int | Sequence[int],
                    channels: int) -> Tensor:
    """Inverse of :func:`patchify_grid`: tokens back to a channels-first grid.

    Args:
        tokens: one row of ``prod(p) * C`` features per patch, row-major over the patch grid.
        grid_size: patches per axis ``(g_1, ..., g_n)`` (the grid is ``g_a p_a`` cells per axis).
        patch_size: patch edge per axis (an int for all axes).
        channels: ``C``.

    Shapes:
        tokens: ``(B, prod(g), prod(p) * C)`` -> ``(B, C, g_1 p_1, ..., g_n p_n)``
    """
    if not isinstance(grid_size, Sequence) or not grid_size:
        raise ValueError(f"grid_size must be a non-empty sequence of patches per axis, got {grid_size!r}")
    g = _as_tuple(grid_size, len(grid_size), "grid_size")
    n = len(g)
    p = _as_tuple(patch_size, n, "patch_size")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    width = prod(p) * channels
    if tokens.dim() != 3 or tokens.shape[1] != prod(g) or tokens.shape[2] != width:
        raise ValueError(f"tokens must have shape (B, {prod(g)}, {width}) for a {g} patch grid, patch {p} and "
                         f"{channels} channels, got {tuple(tokens.shape)}")
    B = tokens.shape[0]
    x = tokens.reshape(B, *g, *p, channels)  # (B, g1..gn, p1..pn, C)
    perm = (0, 2 * n + 1, *[d for a in range(n) for d in (1 + a, 1 + n + a)])  # (B, C, g1, p1, ..., gn, pn)
    return x.permute(perm).reshape(B, channels, *[a * b for a, b in zip(g, p)])


def patchify_2d(images: Tensor, patch_size: int | Sequence[int]) -> Tensor:
    """Cut channels-first images into ``p_h x p_w`` patches, one token each.

    Args:
        images: ``(B, C, H, W)``.
        patch_size: ``p`` or ``(p_h, p_w)``, dividing ``H`` and ``W``.

    Shapes:
        images: ``(B, C, H, W)`` -> ``(B, (H/p_h)(W/p_w), p_h p_w C)``

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> patchify_2d(x, 2)[0]                     # 4 tokens, each a 2x2 patch row-major
        tensor([[ 0.,  1.,  4.,  5.],
                [ 2.,  3.,  6.,  7.],
                [ 8.,  9., 12., 13.],
                [10., 11., 14., 15.]])
        >>> torch.equal(unpatchify_2d(patchify_2d(x, 2), (2, 2), 2, 1), x)
        True
    """
    if images.dim() != 4:
        raise ValueError(f"images must be channels-first (B, C, H, W), got {tuple(images.shape)}; "
                         "add a channel axis with x[:, None] for grey images")
    return patchify_grid(images, patch_size)


def unpatchify_2d(tokens: Tensor, grid_size: Sequence[int], patch_size: int | Sequence[int],
                  channels: int) -> Tensor:
    """Inverse of :func:`patchify_2d`.

    Args:
        tokens: patch tokens, row-major over the patch grid.
        grid_size: ``(H / p_h, W / p_w)`` patches per axis.
        patch_size: ``p`` or ``(p_h, p_w)``.
        channels: ``C``.

    Shapes:
        tokens: ``(B, g_h g_w, p_h p_w C)`` -> ``(B, C, g_h p_h, g_w p_w)``
    """
    if len(grid_size) != 2:
        raise ValueError(f"grid_size must be (patches along H, patches along W), got {tuple(grid_size)}")
    return unpatchify_grid(tokens, grid_size, patch_size, channels)


class PatchTokenizer2D(nn.Module):
    """Images of one size <-> 2-D patch tokens; no parameters.

    Args:
        image_size: ``H`` (square) or ``(H, W)``.
        patch_size: ``p`` or ``(p_h, p_w)``; must divide ``H`` and ``W``.
        channels: ``C``.

    Shapes:
        encode: ``(B, C, H, W)`` -> ``(B, T, p_h p_w C)`` with ``T = (H/p_h)(W/p_w)``;
        decode: the inverse.

    Example:
        >>> tok = PatchTokenizer2D(32, 4, channels=3)
        >>> tok.grid_size, tok.num_tokens, tok.token_dim
        ((8, 8), 64, 48)
        >>> tok.encode(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 64, 48])
    """

    def __init__(self, image_size: int | Sequence[int], patch_size: int | Sequence[int] = 2, channels: int = 3) -> None:
        super().__init__()
        self.image_size = _as_tuple(image_size, 2, "image_size")
        self.patch_size = _as_tuple(patch_size, 2, "patch_size")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        if any(s % p for s, p in zip(self.image_size, self.patch_size)):
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size} on both axes; "
                             "e.g. a 16x16 image takes patches of 1, 2, 4, 8 or 16")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per axis ``(H/p_h, W/p_w)``."""
        return (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])

    @property
    def num_tokens(self) -> int:
        """``T = (H/p_h)(W/p_w)``."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def token_dim(self) -> int:
        """Features per token, ``p_h p_w C``."""
        return self.patch_size[0] * self.patch_size[1] * self.channels

    def encode(self, images: Tensor) -> Tensor:
        """Tokens ``(B, T, p_h p_w C)`` of images ``(B, C, H, W)``.

        Raises:
            ValueError: not a floating-point tensor of this tokenizer's image shape, or NaN/inf.
        """
        expected = (self.channels, *self.image_size)
        if not isinstance(images, Tensor) or not images.is_floating_point():
            what = f"a {images.dtype} tensor" if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a floating-point torch.Tensor (B, {', '.join(map(str, expected))}), "
                             f"got {what}; scale them to [-1, 1] as float32")
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape (B, {', '.join(map(str, expected))}) for this tokenizer, "
                             f"got {tuple(images.shape)}; build the model for the image size you feed it")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or inf; check the data pipeline and the noise schedule")
        return patchify_2d(images, self.patch_size)  # (B, T, p_h p_w C)

    def decode(self, tokens: Tensor) -> Tensor:
        return unpatchify_2d(tokens, self.grid_size, self.patch_size, self.channels)  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, patch_size={self.patch_size}, channels={self.channels}"
