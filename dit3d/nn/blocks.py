"""adaLN-Zero transformer block and final layer (Peebles & Xie 2023, DiT)."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dit3d.nn.attention import Attention
from dit3d.nn.norms import make_norm
from dit3d.nn.step_cache import BranchFn, compute_branch


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    r"""Adaptive norm modulation :math:`x (1 + \gamma) + \beta`; shift/scale ``(B, 1, D)``."""
    return x * (1 + scale) + shift


#: MLP activations by name: DiT's tanh-approximated GELU, or the exact (erf) GELU, which
#: differs from it by at most 4.7e-4 and is several times faster on CPUs (``python -m
#: dit3d.bench gelu`` times both, alone and in a DiT-3D-S/4 train and int8 sampling step)
MLP_ACTIVATIONS = {"gelu_tanh": "tanh", "gelu": "none"}


class Mlp(nn.Module):
    """Two-layer feed-forward network with GELU: tanh-approximated as in DiT (default), or exact.

    Args:
        dim: input and output width ``D``.
        hidden: hidden width.
        act: a key of :data:`MLP_ACTIVATIONS`, ``"gelu_tanh"`` or ``"gelu"``.

    Shapes:
        x: ``(..., D)`` -> ``(..., D)``
    """

    def __init__(self, dim: int, hidden: int, act: str = "gelu_tanh") -> None:
        super().__init__()
        if act not in MLP_ACTIVATIONS:
            raise ValueError(f"unknown MLP activation {act!r}; choose one of {sorted(MLP_ACTIVATIONS)}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=MLP_ACTIVATIONS[act])
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x))  # (..., hidden)
        return self.fc2(h)  # (..., D)


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
        mlp_act: the MLP's activation (:data:`MLP_ACTIVATIONS`).

    ``forward``'s ``branch`` computes (default) or reuses the attention and MLP outputs
    (:mod:`dit3d.nn.step_cache`); the gates always follow the current ``c``.

    Shapes:
        x: ``(B, T, D)``; c: ``(B, D)``; mask: ``(B, T)`` bool -> ``(B, T, D)``
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 norm: str = "layernorm", window_size: Sequence[int] | None = None, mlp_act: str = "gelu_tanh") -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, norm=norm, window_size=window_size)
        self.norm2 = make_norm(norm, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), mlp_act)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None = None,
                grid: Sequence[int] | None = None, branch: BranchFn = compute_branch) -> Tensor:
        mod = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)  # 6 x (B, 1, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        h = branch(0, lambda: self.attn(modulate(self.norm1(x), shift_msa, scale_msa), mask, grid), x)  # (B, T, D)
        x = x + gate_msa * h  # (B, T, D)
        h = branch(1, lambda: self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)), x)  # (B, T, D)
        return x + gate_mlp * h  # (B, T, D)


class FactorisedDiTBlock(nn.Module):
    r"""adaLN-Zero block whose attention is factorised over groups of token-grid axes.

    With axis groups :math:`A_1, \dots, A_K` (default ``((1, 2), (0,))``) each group gets
    its own attention sub-layer, applied in turn with its own modulation and residual,
    before the MLP:

    .. math::
        (\beta_k, \gamma_k, \alpha_k)_{k=1..K},\ (\beta_m, \gamma_m, \alpha_m) = W\,\mathrm{SiLU}(c) + b

        x \leftarrow x + \alpha_k \odot \mathrm{Attn}_{A_k}(\mathrm{Norm}(x)(1 + \gamma_k) + \beta_k),
        \quad k = 1, \dots, K

        x \leftarrow x + \alpha_m \odot \mathrm{MLP}(\mathrm{Norm}(x)(1 + \gamma_m) + \beta_m)

    where :math:`\mathrm{Attn}_{A}` lets a token attend only to the tokens that share its
    coordinates on every axis outside :math:`A` (:class:`~dit3d.nn.attention.Attention`
    with ``axes=A``). On an ``(F, H, W)`` grid the default is divided space-time attention
    (TimeSformer, Bertasius et al. 2021; VDT, Lu et al. 2023): attention within each
    slice of axis 0, then along axis 0 at each ``(h, w)``. One group of all axes is joint
    attention and equals :class:`DiTBlock` with ``K = 1``. Attention over a token costs
    :math:`\sum_k \prod_{a \in A_k} g_a` keys instead of :math:`\prod_a g_a`.

    ``W`` and ``b`` start at zero (adaLN-Zero): a fresh block is the identity.

    Args:
        dim: token width ``D``.
        num_heads: attention heads of every sub-layer.
        mlp_ratio: MLP hidden width over ``D``.
        qk_norm: per-head query/key normalisation.
        norm: ``"layernorm"`` or ``"rmsnorm"`` (no affine parameters).
        axes: the axis groups :math:`A_k`, in order of application; indices into the grid
            given to ``forward``.
        mlp_act: the MLP's activation (:data:`MLP_ACTIVATIONS`).

    Shapes:
        x: ``(B, T, D)``; c: ``(B, D)``; mask: ``(B, T)`` bool; grid: ``n`` ints with
        ``prod(grid) == T`` and ``n`` above every axis index -> ``(B, T, D)``
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 norm: str = "layernorm", axes: Sequence[Sequence[int]] = ((1, 2), (0,)),
                 mlp_act: str = "gelu_tanh") -> None:
        super().__init__()
        self.axes = tuple(tuple(int(a) for a in group) for group in axes)
        if not self.axes or any(not group for group in self.axes):
            raise ValueError(f"axes must be one or more non-empty groups of grid axes, e.g. ((1, 2), (0,)), "
                             f"got {axes!r}")
        self.norm1 = make_norm(norm, dim)
        self.attns = nn.ModuleList(Attention(dim, num_heads, qk_norm=qk_norm, norm=norm, axes=group)
                                   for group in self.axes)
        self.norm2 = make_norm(norm, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), mlp_act)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * (len(self.axes) + 1) * dim))

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None = None,
                grid: Sequence[int] | None = None, branch: BranchFn = compute_branch) -> Tensor:
        if grid is None:
            raise ValueError(f"factorised attention over axes {self.axes} needs the token grid: "
                             "pass grid=(g1, ..., gn) with prod == T")
        mod = self.adaLN_modulation(c)[:, None].chunk(3 * (len(self.axes) + 1), dim=-1)  # 3(K+1) x (B, 1, D)
        for k, attn in enumerate(self.attns):
            shift, scale, gate = mod[3 * k: 3 * k + 3]
            h = branch(k, lambda: attn(modulate(self.norm1(x), shift, scale), mask, grid), x)  # (B, T, D)
            x = x + gate * h  # (B, T, D)
        shift, scale, gate = mod[-3:]
        h = branch(len(self.attns), lambda: self.mlp(modulate(self.norm2(x), shift, scale)), x)  # (B, T, D)
        return x + gate * h  # (B, T, D)


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
