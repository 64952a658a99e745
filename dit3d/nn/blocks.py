"""adaLN-Zero transformer block and final layer (Peebles & Xie 2023, DiT)."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dit3d.nn.attention import Attention
from dit3d.nn.norms import make_norm


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    r"""Adaptive norm modulation :math:`x (1 + \gamma) + \beta`; shift/scale ``(B, 1, D)``."""
    return x * (1 + scale) + shift


class Mlp(nn.Module):
    """Two-layer feed-forward network with tanh-approximated GELU, as in DiT.

    Shapes:
        x: ``(..., D)`` -> ``(..., D)``
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    r"""Transformer block with adaptive LayerNorm-Zero conditioning.

    .. math::
        (\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2) = W\,\mathrm{SiLU}(c) + b

        x \leftarrow x + \alpha_1 \odot \mathrm{Attn}(\mathrm{Norm}(x)(1 + \gamma_1) + \beta_1)

        x \leftarrow x + \alpha_2 \odot \mathrm{MLP}(\mathrm{Norm}(x)(1 + \gamma_2) + \beta_2)

    ``W`` and ``b`` start at zero, so the gates :math:`\alpha` are zero and a fresh block is
    the identity on its residual stream.

    Args:
        dim: token width ``D``.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``D``.
        qk_norm: per-head query/key normalisation.
        norm: ``"layernorm"`` or ``"rmsnorm"`` (no affine parameters in either).
        window_size: window per grid axis for window attention, ``None`` for full.

    Shapes:
        x: ``(B, T, D)``; c: ``(B, D)``; mask: ``(B, T)`` bool -> ``(B, T, D)``
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 norm: str = "layernorm", window_size: Sequence[int] | None = None) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, norm=norm, window_size=window_size)
        self.norm2 = make_norm(norm, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None = None,
                grid: Sequence[int] | None = None) -> Tensor:
        mod = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)  # 6 x (B, 1, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        h = self.attn(modulate(self.norm1(x), shift_msa, scale_msa), mask, grid)  # (B, T, D)
        x = x + gate_msa * h  # (B, T, D)
        h = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (B, T, D)
        return x + gate_mlp * h  # (B, T, D)


class FinalLayer(nn.Module):
    r"""Adaptive norm then a linear map to the output width; zero-initialised.

    .. math:: y = W_o\,(\mathrm{Norm}(x)(1 + \gamma) + \beta) + b_o

    Shapes:
        x: ``(B, T, D)``; c: ``(B, D)`` -> ``(B, T, out_dim)``
    """

    def __init__(self, dim: int, out_dim: int, norm: str = "layernorm") -> None:
        super().__init__()
        self.norm_final = make_norm(norm, dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=-1)  # 2 x (B, 1, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, T, out_dim)
