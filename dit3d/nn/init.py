"""The one weight initialisation of every DiT model in dit3d."""
from __future__ import annotations

from torch import nn

from dit3d.nn.blocks import DiTBlock, FactorisedDiTBlock, FinalLayer
from dit3d.nn.conditioning import LabelEmbedder, TimestepEmbedder


def initialize_weights(model: nn.Module) -> None:
    """Initialise a DiT model in place, following Peebles & Xie (2023).

    Every initialisation that differs from PyTorch's default is stated here:

    1. every ``nn.Linear``: Xavier-uniform weight, zero bias (transformer practice);
    2. ``TimestepEmbedder`` MLP weights: normal, std 0.02;
    3. ``LabelEmbedder`` table (null class included): normal, std 0.02;
    4. adaLN modulation of every ``DiTBlock`` (factorised or not) and of the ``FinalLayer``: zero weight and
       bias, so all gates start at zero and every block is the identity (adaLN-Zero);
    5. ``FinalLayer.linear``: zero weight and bias, so a fresh model outputs zeros.

    Modules that this function does not name (e.g. a tokenizer's Conv3d patch embedding)
    keep their own ``reset_parameters`` unless the caller initialises them afterwards.
    """
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, TimestepEmbedder):
            nn.init.normal_(m.mlp[0].weight, std=0.02)
            nn.init.normal_(m.mlp[2].weight, std=0.02)
        elif isinstance(m, LabelEmbedder):
            nn.init.normal_(m.embedding_table.weight, std=0.02)
        elif isinstance(m, (DiTBlock, FactorisedDiTBlock, FinalLayer)):
            nn.init.zeros_(m.adaLN_modulation[-1].weight)
            nn.init.zeros_(m.adaLN_modulation[-1].bias)
            if isinstance(m, FinalLayer):
                nn.init.zeros_(m.linear.weight)
                nn.init.zeros_(m.linear.bias)
