"""A conditioned DiT over continuous tokens: time + label embedders around the trunk."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dit3d.nn.conditioning import LabelEmbedder, TimestepEmbedder
from dit3d.nn.init import initialize_weights
from dit3d.nn.presets import preset_config
from dit3d.nn.trunk import DiTTrunk


class DiT(nn.Module):
    r"""Denoiser over token features: ``Linear`` in, :class:`DiTTrunk`, features out.

    .. math::
        c = \mathrm{TimeEmb}(t) + \mathrm{LabelEmb}(y), \quad
        h = W_{in} [x_t \,\|\, \hat x_{sc}] + E[k] + P, \quad
        \hat f = \mathrm{Trunk}(h, c, m)

    where :math:`\hat x_{sc}` is the self-conditioning input (Chen et al. 2022; zeros
    when absent), :math:`E[k]` an optional learnt embedding of a per-token class
    :math:`k` (e.g. each atom's element, given rather than generated) and :math:`P` an
    optional fixed positional table. Without ``P`` the model is permutation equivariant,
    which suits sets such as atoms.

    Args:
        in_dim: feature width of each token of ``x_t``.
        out_dim: width of the prediction (usually ``in_dim``).
        preset: trunk preset name (``"DiT-S"``...); explicit ``depth``/``hidden_size``/
            ``num_heads`` override it.
        num_classes: number of labels (0: unconditional). Row ``num_classes`` is null.
        class_dropout: label dropout for classifier-free guidance.
        time_scale: multiplier of ``t`` in the time embedder: 1000 for flow matching's
            ``t`` in [0, 1], 1 for DDPM's integer steps (required: the wrong one silently
            degrades the model).
        self_condition: accept ``self_cond`` (same shape as ``x_t``).
        pos_embed: optional fixed ``(T, hidden_size)`` table added to the tokens.
        token_classes: number of per-token classes ``k`` (0: none); ``forward`` then needs
            ``token_labels``.
        **trunk_kwargs: passed to :class:`DiTTrunk` (``mlp_ratio``, ``qk_norm``, ...).

    Shapes:
        x: ``(B, T, in_dim)``; t: ``(B,)``; y: ``(B,)`` long; mask: ``(B, T)``;
        self_cond: ``(B, T, in_dim)``; token_labels: ``(B, T)`` long -> ``(B, T, out_dim)``
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, *, time_scale: float, preset: str = "DiT-S",
                 depth: int | None = None, hidden_size: int | None = None, num_heads: int | None = None,
                 num_classes: int = 0, class_dropout: float = 0.1, self_condition: bool = False,
                 pos_embed: Tensor | None = None, token_classes: int = 0, **trunk_kwargs) -> None:
        super().__init__()
        #: constructor arguments (bar ``pos_embed``), stored with the weights by generators
        self.config = dict(in_dim=in_dim, out_dim=out_dim, time_scale=time_scale, preset=preset, depth=depth,
                           hidden_size=hidden_size, num_heads=num_heads, num_classes=num_classes,
                           class_dropout=class_dropout, self_condition=self_condition, **trunk_kwargs)
        if token_classes:  # only when used, so the exported config.json of a plain DiT stays as it was
            self.config["token_classes"] = token_classes
        cfg = preset_config(preset)
        cfg.update({k: v for k, v in dict(depth=depth, hidden_size=hidden_size, num_heads=num_heads).items() if v})
        D = cfg["hidden_size"]
        self.in_dim, self.out_dim, self.self_condition = in_dim, out_dim or in_dim, self_condition
        self.x_embed = nn.Linear(in_dim * (2 if self_condition else 1), D)
        self.t_embed = TimestepEmbedder(D, time_scale=time_scale)
        self.y_embed = LabelEmbedder(num_classes, D, class_dropout) if num_classes > 0 else None
        self.token_embed = nn.Embedding(token_classes, D) if token_classes > 0 else None
        self.register_buffer("pos_embed", pos_embed, persistent=False)
        self.trunk = DiTTrunk(**cfg, out_dim=self.out_dim, **trunk_kwargs)
        # re-initialises the trunk as well; kept, since seeded runs must replay the shipped checkpoints
        initialize_weights(self)

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Label dropout for classifier-free guidance; call once per training batch."""
        return self.y_embed.drop_labels(y, generator) if self.y_embed is not None else y

    def condition(self, t: Tensor, y: Tensor | None) -> Tensor:
        """``(B, D)`` conditioning vector from times and (optional) labels; ``None``
        labels mean the null class."""
        c = self.t_embed(t)  # (B, D)
        if self.y_embed is not None:
            if y is None:
                y = torch.full_like(t, self.y_embed.null_class, dtype=torch.long)
            c = c + self.y_embed(y)
        elif y is not None:
            raise ValueError("labels given to an unconditional DiT (num_classes=0)")
        return c

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, mask: Tensor | None = None,
                self_cond: Tensor | None = None, grid: Sequence[int] | None = None,
                token_labels: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"x must have shape (B, T, {self.in_dim}), got {tuple(x.shape)}")
        if self.self_condition:
            x = torch.cat([x, torch.zeros_like(x) if self_cond is None else self_cond], dim=-1)  # (B, T, 2F)
        elif self_cond is not None:
            raise ValueError("self_cond given but the DiT was built with self_condition=False")
        h = self.x_embed(x)  # (B, T, D)
        if self.token_embed is not None:
            h = h + self.token_embed(self._check_token_labels(token_labels, h))  # (B, T, D)
        elif token_labels is not None:
            raise ValueError("token_labels given but the DiT was built with token_classes=0")
        if self.pos_embed is not None:
            if h.shape[1] > self.pos_embed.shape[0]:
                raise ValueError(f"{h.shape[1]} tokens but pos_embed has rows for {self.pos_embed.shape[0]}: "
                                 "build pos_embed for at least as many tokens as the inputs carry")
            h = h + self.pos_embed[: h.shape[1]]  # (B, T, D)
        return self.trunk(h, self.condition(t, y), mask, grid)  # (B, T, out_dim)

    def _check_token_labels(self, token_labels: Tensor | None, h: Tensor) -> Tensor:
        n = self.token_embed.num_embeddings
        if token_labels is None:
            raise ValueError(f"this DiT was built with token_classes={n}: pass token_labels, (B, T) long")
        if token_labels.shape != h.shape[:2] or token_labels.dtype != torch.long:
            raise ValueError(f"token_labels must be {tuple(h.shape[:2])} long, got {token_labels.dtype} "
                             f"{tuple(token_labels.shape)}")
        if token_labels.numel() and not bool(((token_labels >= 0) & (token_labels < n)).all()):
            raise ValueError(f"token_labels must lie in 0..{n - 1}, got {int(token_labels.min())}.."
                             f"{int(token_labels.max())}")
        return token_labels
