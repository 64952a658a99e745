"""Property checks shipped with the library (e3nn-style), for the trunk and its parts.

Each ``assert_*`` function raises ``AssertionError`` with the largest deviation when the
property fails, so downstream code (new tokenizers, new attention kinds) can reuse them.
A freshly initialised adaLN-Zero trunk is the identity, which would make most properties
hold trivially: call :func:`randomize_` first to test a generic network.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dit3d.nn.attention import Attention
from dit3d.nn.trunk import DiTTrunk
from dit3d.nn.window import window_attention_mask


def randomize_(module: nn.Module, std: float = 0.2, seed: int = 0) -> nn.Module:
    """Overwrite every parameter with ``N(0, std^2)`` draws (seeded), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def _close(actual: Tensor, expected: Tensor, atol: float, what: str) -> None:
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    if not err <= atol:
        raise AssertionError(f"{what}: max abs deviation {err:.3e} > atol {atol:.1e}")


def reference_attention(attn: Attention, x: Tensor, allowed: Tensor) -> Tensor:
    """Slow float64 attention with an explicit softmax and a dense ``(B, T, T)`` mask.

    Uses ``attn``'s own weights; rows with no allowed key attend to every key, as the
    fast path does.
    """
    B, T, D = x.shape
    H, Dh = attn.num_heads, attn.head_dim
    qkv = torch.nn.functional.linear(x.double(), attn.qkv.weight.double(),
                                     None if attn.qkv.bias is None else attn.qkv.bias.double())
    q, k, v = qkv.reshape(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
    q, k = copy.deepcopy(attn.q_norm).double()(q), copy.deepcopy(attn.k_norm).double()(k)
    allowed = allowed | ~allowed.any(-1, keepdim=True)  # (B, T, T)
    scores = q @ k.transpose(-1, -2) / math.sqrt(Dh)  # (B, H, T, T)
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    out = scores.softmax(-1) @ v  # (B, H, T, Dh)
    out = out.transpose(1, 2).reshape(B, T, D)
    return torch.nn.functional.linear(out, attn.proj.weight.double(), attn.proj.bias.double())


def assert_window_equals_masked_full(attn: Attention, x: Tensor, grid: Sequence[int],
                                     mask: Tensor | None = None, atol: float = 1e-4) -> None:
    """Window attention (or attention along grid axes) equals full attention under the
    block-diagonal window mask.

    The reference builds the dense mask per sample, so it also proves that no token
    attends across samples.
    """
    if attn.window_size is None and attn.axes is None:
        raise ValueError("this check needs an Attention built with window_size or axes")
    B, T, _ = x.shape
    allowed = window_attention_mask(grid, attn.window_for(grid))[None].expand(B, T, T)  # (B, T, T)
    if mask is not None:
        allowed = allowed & mask[:, None, :]
    with torch.no_grad():
        fast = attn(x, mask, grid)
        slow = reference_attention(attn, x, allowed).to(fast.dtype)
    real = mask if mask is not None else torch.ones(B, T, dtype=torch.bool)
    _close(fast[real], slow[real], atol, "window attention vs masked full attention")


def assert_permutation_equivariant(trunk: DiTTrunk, x: Tensor, c: Tensor, mask: Tensor | None = None,
                                   seed: int = 0, atol: float = 1e-4) -> None:
    """Permuting the tokens permutes the outputs (no positional embedding inside the trunk)."""
    if trunk.window_blocks or trunk.factorised_blocks:
        raise ValueError("window and factorised attention depend on token order; check a trunk without "
                         "window_blocks and factorised_blocks")
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = trunk(x, c, mask)
        y_perm = trunk(x[:, perm], c, None if mask is None else mask[:, perm])
    _close(y_perm, y[:, perm], atol, "trunk(x[perm]) vs trunk(x)[perm]")


def assert_padding_invariant(trunk: DiTTrunk, x: Tensor, c: Tensor, num_pad: int = 3,
                             seed: int = 0, atol: float = 1e-4) -> None:
    """Appending padded tokens (random content, mask False) changes no real output, and
    padded tokens output zeros."""
    B, T, D = x.shape
    g = torch.Generator().manual_seed(seed)
    junk = torch.randn(B, num_pad, D, generator=g) * 10  # large, to make any leak visible
    x_pad = torch.cat([x, junk], dim=1)  # (B, T + P, D)
    mask = torch.cat([torch.ones(B, T, dtype=torch.bool), torch.zeros(B, num_pad, dtype=torch.bool)], 1)
    with torch.no_grad():
        y = trunk(x, c)
        y_pad = trunk(x_pad, c, mask)
    _close(y_pad[:, :T], y, atol, "real-token outputs with vs without padding")
    _close(y_pad[:, T:], torch.zeros_like(y_pad[:, T:]), 0.0, "outputs of padded tokens")


def assert_identity_at_init(trunk: DiTTrunk, x: Tensor, c: Tensor, mask: Tensor | None = None,
                            grid: Sequence[int] | None = None) -> None:
    """A freshly initialised adaLN-Zero trunk leaves its residual stream unchanged and
    its final layer outputs zeros."""
    with torch.no_grad():
        h = trunk.forward_features(x, c, mask, grid)
        y = trunk(x, c, mask, grid)
    _close(h, x, 0.0, "residual stream of a fresh trunk vs its input")
    _close(y, torch.zeros_like(y), 0.0, "output of a fresh trunk")
