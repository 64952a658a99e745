"""ADiT generation, shared by the Lightning module and the user-facing generator:
latents by flow matching, then decoding to atoms."""
from __future__ import annotations

import torch
from torch import Tensor

from dit3d.nn import DiT, eval_mode
from dit3d.objectives import FlowMatching, guidance_sum
from dit3d.tokenizers.atoms import CRYSTAL, MASK_TOKEN, MOLECULE, AtomAutoencoder

#: international space-group numbers run 1..230
NUM_SPACEGROUPS = 230


def adit_label(kind: int = MOLECULE, spacegroup: int | None = None, spacegroup_conditioning: bool = False) -> int:
    """The latent DiT's class for a system kind, and a space group when the DiT was trained
    with space-group conditioning: 0 molecule, 1 crystal of any space group, ``1 + s``
    crystal of space group ``s`` (1..230).

    Raises:
        ValueError: an unknown kind; a space group for a model trained without them, for a
            molecule, or outside 1..230.

    Example:
        >>> adit_label(1), adit_label(1, 225, spacegroup_conditioning=True)
        (1, 226)
    """
    if kind not in (MOLECULE, CRYSTAL):
        raise ValueError(f"kind must be {MOLECULE} (molecule) or {CRYSTAL} (crystal), got {kind!r}")
    if spacegroup is None:
        return kind
    if not spacegroup_conditioning:
        raise ValueError("this model was trained without space groups; train it with "
                         "spacegroup_conditioning=True to sample a given space group")
    if kind != CRYSTAL or isinstance(spacegroup, bool) or not isinstance(spacegroup, int) \
            or not 1 <= spacegroup <= NUM_SPACEGROUPS:
        raise ValueError(f"a space group (an int in 1..{NUM_SPACEGROUPS}) applies to crystals only, got kind={kind}, "
                         f"spacegroup={spacegroup!r}")
    return 1 + spacegroup


@torch.no_grad()
def sample_latents(dit: DiT, flow: FlowMatching, num_atoms: Tensor, latent_mean: Tensor, latent_std: Tensor,
                   kind: int = 0, steps: int = 100, solver: str = "euler", guidance: float = 1.0,
                   generator: torch.Generator | None = None, x0: Tensor | None = None,
                   t_start: float = 0.0, temperature: float = 1.0,
                   atom_types: Tensor | None = None, guide: DiT | None = None,
                   autoguidance_scale: float = 1.0,
                   autoguidance_interval: tuple[float, float] = (0.0, 1.0)) -> tuple[Tensor, Tensor]:
    """Integrate the flow from noise to de-standardised latents, with classifier-free
    guidance towards system kind ``kind`` (scale 1: the conditional model alone) and/or
    autoguidance by ``guide``, a weaker latent DiT of the same latents (scale 1: off) at
    the flow times in ``autoguidance_interval`` (no autoguidance elsewhere); both at once
    add up (:func:`~dit3d.objectives.guidance_sum`).

    ``x0`` (standardised, zero at padding) replaces the drawn noise; with ``t_start`` it is
    a partly noised sample at that flow time (see :mod:`dit3d.models.adit_probes`).
    ``temperature`` scales the drawn noise (:meth:`~dit3d.objectives.FlowMatching.sample`).
    ``atom_types`` (atomic numbers, 0 at padding) are the per-token labels of a DiT built
    with ``token_classes`` (element conditioning); they condition both guidance halves.

    Shapes:
        num_atoms: ``(B,)``; x0: ``(B, N, L)``; atom_types: ``(B, N)`` -> latents ``(B, N, L)``, mask ``(B, N)`` with
        ``N = max(num_atoms)``
    """
    device = next(dit.parameters()).device
    num_atoms = num_atoms.to(device)
    B, N = num_atoms.shape[0], int(num_atoms.max())
    mask = torch.arange(N, device=device)[None] < num_atoms[:, None]  # (B, N)
    y = torch.full((B,), kind, dtype=torch.long, device=device)
    null = torch.full_like(y, dit.y_embed.null_class)
    tokens = {}
    if atom_types is not None:
        if atom_types.shape != (B, N):
            raise ValueError(f"atom_types must be ({B}, {N}): one row per system, as long as the largest, got "
                             f"{tuple(atom_types.shape)}")
        tokens = {"token_labels": atom_types.to(device).long() * mask}
    model = guidance_sum(dit, guide, guidance, autoguidance_scale, {"y": y, **tokens}, {"y": null, **tokens},
                         autoguidance_interval)
    with eval_mode(dit, guide):
        shape = None if x0 is not None else (B, N, dit.in_dim)
        z = flow.sample(model, shape, x0=None if x0 is None else x0.to(device), steps=steps, solver=solver, mask=mask,
                        generator=generator, progress=False, t_start=t_start, temperature=temperature)  # (B, N, L)
    return (z * latent_std.to(device) + latent_mean.to(device)) * mask[..., None], mask


def composition_atom_types(counts: Tensor) -> Tensor:
    """Atomic numbers of systems given by their element counts, in increasing order and
    padded with 0: the per-token labels of an element-conditioned latent DiT.

    Shapes:
        counts: ``(B, Z + 1)`` (column ``z`` counts atomic number ``z``) -> ``(B, N)`` with
        ``N`` the largest row sum

    Example:
        >>> composition_atom_types(torch.tensor([[0, 4, 0, 0, 0, 0, 1], [0, 2, 0, 0, 0, 0, 0]]))
        tensor([[1, 1, 1, 1, 6],
                [1, 1, 0, 0, 0]])
    """
    z = torch.arange(counts.shape[-1], device=counts.device)
    rows = [torch.repeat_interleave(z, c) for c in counts.long()]
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True) if rows else counts.new_zeros(0, 0)


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


@torch.no_grad()
def decode_crystals(autoencoder: AtomAutoencoder, z: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Crystals from latents: atomic numbers (argmax, never the mask token), fractional
    coordinates wrapped into [0, 1), lattice lengths (Angstrom) and angles (degrees)
    decoded from the standardised lattice features
    (:meth:`~dit3d.tokenizers.AtomAutoencoder.decode_lattice`), and the Cartesian
    positions ``frac_coords @ cell`` in the ``Lattice.from_parameters`` orientation
    (a along x, b in the xy plane).

    Lengths and angles are returned as decoded: a generator should check them (positive
    lengths, angles that make a cell) before building structures.

    Shapes:
        z: ``(B, N, L)``; mask: ``(B, N)`` -> ``atom_types`` ``(B, N)``, ``frac_coords``,
        ``pos`` ``(B, N, 3)``, ``lengths``, ``angles`` ``(B, 3)``, ``cell`` ``(B, 3, 3)``
    """
    from dit3d.tokenizers.augment import wrap_frac

    kinds = torch.full((z.shape[0],), CRYSTAL, dtype=torch.long, device=z.device)
    out = autoencoder.decode(z, mask, kinds)
    logits = out["type_logits"].clone()
    logits[..., MASK_TOKEN] = float("-inf")
    lengths, angles = autoencoder.decode_lattice(out["lattice"], mask.sum(-1))  # (B, 3) each
    frac = wrap_frac(out["frac_coords"]) * mask[..., None]
    cell = cell_from_parameters(lengths, angles)  # (B, 3, 3)
    return {"atom_types": logits.argmax(-1) * mask, "frac_coords": frac, "pos": frac @ cell, "lengths": lengths,
            "angles": angles, "cell": cell}


def cell_from_parameters(lengths: Tensor, angles: Tensor) -> Tensor:
    r"""Lattice vectors (rows) from lengths and angles (degrees), in pymatgen's
    ``Lattice.from_parameters`` orientation (the one :class:`~dit3d.data.CrystalDataset`
    stores): with :math:`\gamma^* = \arccos\frac{\cos\alpha\cos\beta - \cos\gamma}{\sin\alpha\sin\beta}`,
    :math:`a = (a \sin\beta, 0, a\cos\beta)`,
    :math:`b = (-b\sin\alpha\cos\gamma^*, b\sin\alpha\sin\gamma^*, b\cos\alpha)`,
    :math:`c = (0, 0, c)`. Impossible angle triples give NaN rows.

    Shapes:
        lengths, angles: ``(B, 3)`` -> ``(B, 3, 3)``
    """
    a, b, c = lengths.unbind(-1)
    al, be, ga = torch.deg2rad(angles).unbind(-1)
    val = (torch.cos(al) * torch.cos(be) - torch.cos(ga)) / (torch.sin(al) * torch.sin(be))
    gamma_star = torch.arccos(val.clamp(-1.0, 1.0).where(val.abs() <= 1.0 + 1e-6, torch.full_like(val, float("nan"))))
    zero = torch.zeros_like(a)
    va = torch.stack([a * torch.sin(be), zero, a * torch.cos(be)], -1)
    vb = torch.stack([-b * torch.sin(al) * torch.cos(gamma_star), b * torch.sin(al) * torch.sin(gamma_star),
                      b * torch.cos(al)], -1)
    vc = torch.stack([zero, zero, c], -1)
    return torch.stack([va, vb, vc], dim=-2)
