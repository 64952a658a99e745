"""ADiT generation, shared by the Lightning module and the user-facing generator:
latents by flow matching, then decoding to atoms."""
from __future__ import annotations

import torch
from torch import Tensor

from dit3d.nn import DiT
from dit3d.objectives import FlowMatching, classifier_free_guidance
from dit3d.tokenizers.atoms import MASK_TOKEN, AtomAutoencoder


@torch.no_grad()
def sample_latents(dit: DiT, flow: FlowMatching, num_atoms: Tensor, latent_mean: Tensor, latent_std: Tensor,
                   kind: int = 0, steps: int = 100, solver: str = "euler", guidance: float = 1.0,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Integrate the flow from noise to de-standardised latents, with classifier-free
    guidance towards system kind ``kind`` (scale 1: the conditional model alone).

    Shapes:
        num_atoms: ``(B,)`` -> latents ``(B, N, L)``, mask ``(B, N)`` with ``N = max(num_atoms)``
    """
    device = next(dit.parameters()).device
    num_atoms = num_atoms.to(device)
    B, N = num_atoms.shape[0], int(num_atoms.max())
    mask = torch.arange(N, device=device)[None] < num_atoms[:, None]  # (B, N)
    y = torch.full((B,), kind, dtype=torch.long, device=device)
    null = torch.full_like(y, dit.y_embed.null_class)
    model = classifier_free_guidance(dit, guidance, {"y": y}, {"y": null})
    was_training = dit.training
    dit.eval()
    try:
        z = flow.sample(model, (B, N, dit.in_dim), steps=steps, solver=solver, mask=mask, generator=generator,
                        progress=False)  # (B, N, L)
    finally:
        dit.train(was_training)
    return (z * latent_std.to(device) + latent_mean.to(device)) * mask[..., None], mask


@torch.no_grad()
def decode_atoms(autoencoder: AtomAutoencoder, z: Tensor, mask: Tensor, kind: int = 0) -> tuple[Tensor, Tensor]:
    """Atomic numbers (argmax over elements, never the mask token) and positions.

    Shapes:
        z: ``(B, N, L)``; mask: ``(B, N)`` -> types ``(B, N)``, positions ``(B, N, 3)``
    """
    kinds = torch.full((z.shape[0],), kind, dtype=torch.long, device=z.device)
    out = autoencoder.decode(z, mask, kinds)
    logits = out["type_logits"].clone()
    logits[..., MASK_TOKEN] = float("-inf")
    return logits.argmax(-1) * mask, out["pos"]
