"""The shared DiT trunk: a stack of adaLN-Zero blocks and a final layer over tokens."""
from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor, nn

from dit3d.nn.blocks import DiTBlock, FactorisedDiTBlock, FinalLayer
from dit3d.nn.init import initialize_weights
from dit3d.nn.step_cache import BranchCache, compute_branch


class DiTTrunk(nn.Module):
    r"""Domain-agnostic Diffusion Transformer trunk (Peebles & Xie 2023).

    .. math::
        h_0 = x, \quad h_{l+1} = \mathrm{DiTBlock}_l(h_l, c, M), \quad
        y = \mathrm{FinalLayer}(h_L, c) \odot m

    The trunk sees only tokens, a conditioning vector and a key-padding mask ``m``: the
    tokenizers of each domain (atoms, voxels, patches, tubelets) and the embedders of
    time and labels live outside. Padded tokens never act as keys, so they cannot change
    real tokens, and their outputs are set to zero.

    Args:
        depth: number of blocks ``L``.
        hidden_size: token width ``D``.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width over ``D``.
        out_dim: output width of the final layer (default ``D``).
        qk_norm: per-head query/key normalisation in every block.
        norm: ``"layernorm"`` or ``"rmsnorm"``.
        window_size: window per grid axis for the blocks in ``window_blocks``.
        window_blocks: indices of blocks that use window attention; the others attend
            globally. DiT-3D uses ``(0, 3, 6, 9)`` with ``window_size=(4, 4, 4)``.
        factorised_blocks: indices of blocks whose attention is factorised over groups of
            grid axes (:class:`~dit3d.nn.blocks.FactorisedDiTBlock`); the others attend
            jointly over all tokens (or in windows). ``()`` (default): none.
        factorised_axes: the axis groups of those blocks, applied in turn; the default
            ``((1, 2), (0,))`` on an ``(F, H, W)`` grid attends within each slice of axis 0,
            then along axis 0 (VDT's spatial-then-temporal attention on frames).
        mlp_act: the blocks' MLP activation: ``"gelu_tanh"`` (DiT's, default) or
            ``"gelu"`` (exact; faster on CPUs, see :data:`~dit3d.nn.blocks.MLP_ACTIVATIONS`).
        check_inputs: validate shapes and reject NaN/inf inputs in ``forward``.

    While :attr:`branch_cache` is set (by :func:`~dit3d.nn.step_cache.branch_caching`,
    for sampling), the blocks reuse their attention and MLP outputs between refreshes.

    Shapes:
        x: ``(B, T, D)``; c: ``(B, D)``; mask: ``(B, T)`` bool, True = real token;
        grid: ``n`` ints with ``prod(grid) == T`` when any block uses windows or
        factorised attention -> ``(B, T, out_dim)``

    Example:
        >>> trunk = DiTTrunk(depth=2, hidden_size=48, num_heads=4)
        >>> trunk(torch.randn(2, 5, 48), torch.randn(2, 48)).abs().max().item()
        0.0
    """

    def __init__(self, depth: int, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0,
                 out_dim: int | None = None, qk_norm: bool = False, norm: str = "layernorm",
                 window_size: Sequence[int] | None = None, window_blocks: Sequence[int] = (),
                 factorised_blocks: Sequence[int] = (), factorised_axes: Sequence[Sequence[int]] = ((1, 2), (0,)),
                 mlp_act: str = "gelu_tanh", check_inputs: bool = True) -> None:
        super().__init__()
        for name, ids in (("window_blocks", window_blocks), ("factorised_blocks", factorised_blocks)):
            bad = [i for i in ids if not 0 <= i < depth]
            if bad:
                raise ValueError(f"{name} {list(ids)} name blocks outside 0..{depth - 1}: {bad}")
        if window_blocks and window_size is None:
            raise ValueError("window_blocks is set but window_size is None; give a window per grid axis, e.g. (4, 4, 4)")
        both = sorted(set(window_blocks) & set(factorised_blocks))
        if both:
            raise ValueError(f"blocks {both} are in both window_blocks and factorised_blocks; give each block one "
                             "attention layout")
        self.hidden_size = hidden_size
        self.out_dim = out_dim or hidden_size
        self.window_blocks = tuple(sorted(set(window_blocks)))
        self.factorised_blocks = tuple(sorted(set(factorised_blocks)))
        self.factorised_axes = tuple(tuple(int(a) for a in group) for group in factorised_axes)
        self.check_inputs = check_inputs
        self.blocks = nn.ModuleList(
            FactorisedDiTBlock(hidden_size, num_heads, mlp_ratio, qk_norm, norm, self.factorised_axes, mlp_act)
            if i in self.factorised_blocks else
            DiTBlock(hidden_size, num_heads, mlp_ratio, qk_norm, norm,
                     window_size if i in self.window_blocks else None, mlp_act)
            for i in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, self.out_dim, norm)
        #: set while sampling with reused branch outputs; None computes every block in full
        self.branch_cache: BranchCache | None = None
        initialize_weights(self)

    def _validate(self, x: Tensor, c: Tensor, mask: Tensor | None, grid: Sequence[int] | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"tokens must have shape (B, T, {self.hidden_size}), got {tuple(x.shape)}")
        B, T, D = x.shape
        if c.shape != (B, D):
            raise ValueError(f"condition must have shape (B, D) = {(B, D)}, got {tuple(c.shape)}")
        if mask is not None:
            if mask.shape != (B, T):
                raise ValueError(f"mask must have shape (B, T) = {(B, T)} like the tokens, got {tuple(mask.shape)}")
            if mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool (True = real token), got {mask.dtype}")
        if self.window_blocks:
            if grid is None or prod(grid) != T:
                raise ValueError(f"window attention needs grid with prod(grid) == T = {T}, got grid={grid}")
        if self.factorised_blocks:
            if grid is None or prod(grid) != T:
                raise ValueError(f"factorised attention needs grid with prod(grid) == T = {T}, got grid={grid}")
            top = max(a for group in self.factorised_axes for a in group)
            if top >= len(grid):
                raise ValueError(f"factorised_axes {self.factorised_axes} name grid axis {top}, but the grid "
                                 f"{tuple(grid)} has {len(grid)} axes; pass the full token grid, e.g. (F, H, W)")
        for name, t in (("tokens", x), ("condition", c)):
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contain NaN or inf; check the inputs and the noise schedule upstream")

    def forward_features(self, x: Tensor, c: Tensor, mask: Tensor | None = None,
                         grid: Sequence[int] | None = None) -> Tensor:
        """Residual stream after the last block, before the final layer: ``(B, T, D)``."""
        if self.check_inputs:
            self._validate(x, c, mask, grid)
        cache = self.branch_cache
        if cache is not None:
            cache.start_call()
        for i, block in enumerate(self.blocks):
            x = block(x, c, mask, grid, compute_branch if cache is None else cache.for_block(i))  # (B, T, D)
        return x

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None = None,
                grid: Sequence[int] | None = None) -> Tensor:
        h = self.forward_features(x, c, mask, grid)  # (B, T, D)
        y = self.final_layer(h, c)  # (B, T, out_dim)
        if mask is not None:
            y = y * mask[..., None].to(y.dtype)  # padded tokens output zeros
        return y
