"""Multi-head self-attention over tokens, full or windowed, with key-padding masks."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dit3d.nn.norms import make_norm
from dit3d.nn.window import window_partition, window_reverse


def key_padding_to_attn_mask(mask: Tensor) -> Tensor:
    """Turn a ``(B, T)`` key-padding mask (True = real) into an SDPA boolean mask.

    A query whose row has no real key at all (an all-padding sample or window) would get
    NaN from the softmax; those rows are opened to every key instead. Their outputs are
    padding, which the trunk zeroes, so this only keeps NaNs out of the residual stream.

    Shapes:
        mask: ``(B, T)`` -> ``(B, 1, 1, T)``
    """
    empty = ~mask.any(dim=-1, keepdim=True)  # (B, 1)
    return (mask | empty)[:, None, None, :]


class Attention(nn.Module):
    r"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017).

    .. math::
        \mathrm{Attn}(X) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_h}} + M\right) V,
        \quad Q, K, V = X W_{qkv}

    with :math:`M_{ij} = -\infty` where key ``j`` is padding or lies in another window.
    Window attention (Liu et al. 2021; DiT-3D, Mo et al. 2023) partitions an ``n``-D token
    grid into non-overlapping windows and attends within each window only, per sample.

    Args:
        dim: token width ``D``; must be divisible by ``num_heads``.
        num_heads: number of heads.
        qkv_bias: bias on the ``qkv`` projection.
        qk_norm: normalise queries and keys per head (Dehghani et al. 2023) for stability.
        norm: ``"layernorm"`` or ``"rmsnorm"`` for the QK-norm.
        window_size: window per grid axis; ``None`` means full (global) attention.

    Shapes:
        x: ``(B, T, D)``; mask: ``(B, T)`` bool or ``None``; grid: ``n`` ints with
        ``prod(grid) == T`` (required for window attention) -> ``(B, T, D)``
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False,
                 norm: str = "layernorm", window_size: Sequence[int] | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = tuple(window_size) if window_size is not None else None
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = make_norm(norm, self.head_dim, affine=True) if qk_norm else nn.Identity()
        self.k_norm = make_norm(norm, self.head_dim, affine=True) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, grid: Sequence[int] | None = None) -> Tensor:
        B, T, D = x.shape
        if self.window_size is not None:
            if grid is None:
                raise ValueError("window attention needs the token grid: pass grid=(g1, ..., gn) with prod == T")
            x = window_partition(x, grid, self.window_size)  # (B*nW, w, D)
            if mask is not None:
                mask = window_partition(mask[..., None], grid, self.window_size)[..., 0]  # (B*nW, w)
        Bw, Tw, _ = x.shape
        qkv = self.qkv(x).reshape(Bw, Tw, 3, self.num_heads, self.head_dim)  # (Bw, Tw, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (Bw, H, Tw, Dh)
        q, k = self.q_norm(q), self.k_norm(k)
        attn_mask = key_padding_to_attn_mask(mask) if mask is not None else None  # (Bw, 1, 1, Tw)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (Bw, H, Tw, Dh)
        out = self.proj(out.transpose(1, 2).reshape(Bw, Tw, D))  # (Bw, Tw, D)
        if self.window_size is not None:
            out = window_reverse(out, grid, self.window_size)  # (B, T, D)
        return out
