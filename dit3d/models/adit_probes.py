"""Where an ADiT model loses samples: two probes that start from real systems.

- :func:`decoder_tolerance`: decode real posterior means perturbed by ``sigma`` times the
  per-dimension spread of the latents. How far off may a latent DiT's samples be?
- :func:`partial_flow`: noise real standardised latents to flow time ``t0``
  (:math:`x_{t_0} = (1 - t_0)\\,\\epsilon + t_0 z_1`), integrate the DiT's flow from
  :math:`t_0` to 1 with Heun steps, decode. How close does the DiT bring them back?

Both return decoded ``(types, positions)`` per system for any metric to judge, with the
distance of the end point to the real latent.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dit3d.models.adit_sampling import decode_atoms, sample_latents
from dit3d.tokenizers.atoms import MOLECULE, AtomAutoencoder, Atoms
from dit3d.tokenizers.augment import augment

__all__ = ["decoder_tolerance", "partial_flow"]

Decoded = list[tuple[Tensor, Tensor]]


def _one_kind(atoms: Atoms) -> int:
    kinds = atoms.dataset_idx.unique()
    if kinds.numel() != 1:
        raise ValueError(f"probe one kind of system at a time; this batch mixes kinds {kinds.tolist()} "
                         "(select one with atoms.select(atoms.dataset_idx == kind))")
    return int(kinds[0])


def _split(types: Tensor, pos: Tensor, mask: Tensor) -> Decoded:
    return [(types[b, :k], pos[b, :k].double()) for b, k in enumerate(mask.sum(-1).tolist())]


@torch.no_grad()
def decoder_tolerance(autoencoder: AtomAutoencoder, atoms: Atoms, sigmas: Sequence[float],
                      generator: torch.Generator | None = None) -> dict[float, Decoded]:
    """Decoded systems for each relative latent perturbation ``sigma`` (0: plain reconstruction).

    Shapes:
        atoms: a batch of ``B`` centred molecules -> ``{sigma: B pairs (types (n,), pos (n, 3))}``
    """
    bad = [s for s in sigmas if not math.isfinite(s) or s < 0]
    if bad:
        raise ValueError(f"sigmas must be finite and >= 0 (fractions of the latent spread), got {bad}")
    kind = _one_kind(atoms)
    mean, _ = autoencoder.encode(atoms)  # (B, N, L)
    m = atoms.mask
    spread = mean[m].std(0)  # (L,)
    out = {}
    for sigma in sigmas:
        noise = torch.randn(mean.shape, generator=generator).to(mean)
        z = (mean + sigma * spread * noise) * m[..., None]  # (B, N, L)
        out[sigma] = _split(*decode_atoms(autoencoder, z, m, kind), m)
    return out


@torch.no_grad()
def partial_flow(gen, atoms: Atoms, t0s: Sequence[float], steps: int = 20,
                 generator: torch.Generator | None = None) -> dict[float, tuple[Decoded, float]]:
    """For each ``t0``: decoded systems and the RMS distance (standardised units, over real
    atoms) between the flow's end point and the real latent it started from.

    Args:
        gen: an :class:`~dit3d.api_adit.ADiTGenerator` (autoencoder, DiT, flow, latent statistics).
        atoms: a batch of centred systems of one kind (a model of ``frame="principal"``
            gets its molecules turned into their principal-axes pose, the one it learnt,
            so the decoded molecules come back in that pose, not in ``atoms``' own).
        t0s: start times in ``[0, 1)``; 0 is plain sampling from noise.
        steps: Heun steps from ``t0`` to 1.
    """
    m, kind = atoms.mask, _one_kind(atoms)
    if gen.frame != "random" and kind == MOLECULE:  # the pose the DiT learnt; crystals keep theirs
        atoms = augment(atoms, frame=gen.frame)
    # an element-conditioned DiT is given the real elements (label 0 where its kind is not conditioned)
    types = None if gen.dit.token_embed is None else atoms.atom_types.long() * gen.kind_conditioned(kind)  # (B, N)
    mean, _ = gen.autoencoder.encode(atoms)
    z1 = (mean - gen.latent_mean) / gen.latent_std * m[..., None]  # (B, N, L)
    out = {}
    for t0 in t0s:
        if not 0 <= t0 < 1:
            raise ValueError(f"t0 must lie in [0, 1), got {t0}")
        noise = torch.randn(z1.shape, generator=generator).to(z1)
        x = ((1 - t0) * noise + t0 * z1) * m[..., None]  # (B, N, L)
        z, _ = sample_latents(gen.dit, gen.flow, m.sum(-1), gen.latent_mean, gen.latent_std, kind, steps, "heun",
                              x0=x, t_start=t0, atom_types=types)  # (B, N, L), de-standardised
        rmse = float(((z - mean) / gen.latent_std)[m].square().mean().sqrt())
        out[t0] = (_split(*decode_atoms(gen.autoencoder, z, m, kind), m), rmse)
    return out
