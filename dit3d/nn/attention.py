"""Multi-head self-attention over tokens, full or windowed, with key-padding masks."""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from dit3d.nn.norms import make_norm
from dit3d.nn.window import axes_window, window_partition, window_reverse


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
    Attention along grid ``axes`` (axial attention, Ho et al. 2019) is the window that
    spans those axes whole and is 1 wide on the others
    (:func:`~dit3d.nn.window.axes_window`): on an ``(F, H, W)`` grid, ``axes=(1, 2)``
    attends within each slice of axis 0 and ``axes=(0,)`` along axis 0 at each ``(h, w)``.

    Args:
        dim: token width ``D``; must be divisible by ``num_heads``.
        num_heads: number of heads.
        qkv_bias: bias on the ``qkv`` projection.
        qk_norm: normalise queries and keys per head (Dehghani et al. 2023) for stability.
        norm: ``"layernorm"`` or ``"rmsnorm"`` for the QK-norm.
        window_size: window per grid axis; ``None`` means full (global) attention.
        axes: attend along these grid axes only (the window follows the grid given to
            ``forward``); exclusive with ``window_size``.

    Shapes:
        x: ``(B, T, D)``; mask: ``(B, T)`` bool or ``None``; grid: ``n`` ints with
        ``prod(grid) == T`` (required for window and axis attention) -> ``(B, T, D)``
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False,
                 norm: str = "layernorm", window_size: Sequence[int] | None = None,
                 axes: Sequence[int] | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        if window_size is not None and axes is not None:
            raise ValueError("give window_size (fixed windows) or axes (attention along grid axes), not both")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = tuple(window_size) if window_size is not None else None
        self.axes = tuple(axes) if axes is not None else None
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = make_norm(norm, self.head_dim, affine=True) if qk_norm else nn.Identity()
        self.k_norm = make_norm(norm, self.head_dim, affine=True) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def window_for(self, grid: Sequence[int] | None) -> tuple[int, ...] | None:
        """The window this layer uses on ``grid``: ``window_size``, the window of ``axes``
        on that grid, or ``None`` for full attention."""
        if self.window_size is None and self.axes is None:
            return None
        if grid is None:
            kind = "window attention" if self.axes is None else f"attention along axes {self.axes}"
            raise ValueError(f"{kind} needs the token grid: pass grid=(g1, ..., gn) with prod == T")
        return self.window_size if self.axes is None else axes_window(grid, self.axes)

    def forward(self, x: Tensor, mask: Tensor | None = None, grid: Sequence[int] | None = None) -> Tensor:
        B, T, D = x.shape
        window = self.window_for(grid)
        if window is not None:
            x = window_partition(x, grid, window)  # (B*nW, w, D)
            if mask is not None:
                mask = window_partition(mask[..., None], grid, window)[..., 0]  # (B*nW, w)
        Bw, Tw, _ = x.shape
        qkv = self.qkv(x).reshape(Bw, Tw, 3, self.num_heads, self.head_dim)  # (Bw, Tw, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (Bw, H, Tw, Dh)
        q, k = self.q_norm(q), self.k_norm(k)
        attn_mask = key_padding_to_attn_mask(mask) if mask is not None else None  # (Bw, 1, 1, Tw)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (Bw, H, Tw, Dh)
        out = self.proj(out.transpose(1, 2).reshape(Bw, Tw, D))  # (Bw, Tw, D)
        if window is not None:
            out = window_reverse(out, grid, window)  # (B, T, D)
        return out
