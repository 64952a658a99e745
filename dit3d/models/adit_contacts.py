r"""Close-contact penalty for ADiT decoders: decoded atoms pay for coming closer than the data.

The hypothesis behind it: a decoder trained by mean-squared error on latents it cannot read
exactly (a latent DiT's samples, or ``latent_noise`` in training) hedges towards the average
position of each atom, so two uncertain atoms may meet half-way and the decoded structure
holds a pair far closer than any real one (a crystal with a pair under 0.5 Angstrom is
structurally invalid by the CDVAE definition). On adit-joint-cpu it did not hold: a decoder
fine-tuned with this penalty sampled as many colliding crystals as without it
(data/adit_joint_cpu/README.md). The penalty charges every decoded pair the square of its
shortfall from the true pair distance, up to a cutoff:

.. math::
    \mathcal{L}_{contact} = \frac{1}{n} \sum_{s} \sum_{i<j \in s}
        \mathrm{relu}\big(\min(d_{ij}, c) - \hat d_{ij}\big)^2

with :math:`d_{ij}` the true and :math:`\hat d_{ij}` the decoded distance (Angstrom), ``c``
the cutoff and ``n`` the number of real atoms in the batch. Pairs the data holds closer than
``c`` keep their own distance as the floor, so the true structure always costs 0. Atoms
decoded exactly on top of each other get no gradient (the direction is undefined).
Molecules use Cartesian positions; crystals their fractional coordinates through the TRUE
cell (the lattice has its own loss), with the periodic minimum image over the 27
neighbouring cells: exact in practice for the Niggli-reduced cells of the crystal loaders
(tested against pymatgen on a skewed reduced cell), an upper bound for very skewed cells.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

from dit3d.tokenizers.atoms import CRYSTAL, Atoms

#: the 27 lattice translations {-1, 0, 1}^3 of the minimum-image search, ``(27, 3)``
_IMAGES = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)))


def min_image(diff: Tensor) -> Tensor:
    """Fractional-coordinate differences wrapped to [-0.5, 0.5): the periodic
    (minimum-image) error, so 0.99 vs 0.01 counts as 0.02 apart, not 0.98."""
    return diff - torch.round(diff)


def pair_distances(coords: Tensor, cell: Tensor | None, periodic: Tensor) -> Tensor:
    """All pairwise distances (Angstrom) within each system.

    Args:
        coords: ``(B, N, 3)``: Cartesian positions (Angstrom) of molecules, fractional
            coordinates of crystals.
        cell: ``(B, 3, 3)`` lattice vectors as rows (ignored for molecules); ``None`` when
            no system is periodic.
        periodic: ``(B,)`` bool, which systems are crystals.

    Returns:
        ``(B, N, N)`` distances; crystals take the shortest of the 27 nearest images. The
        diagonal is 1e-6, not 0: an epsilon under the square root keeps gradients finite.

    Raises:
        ValueError: crystals without ``cell``.
    """
    diff = coords[:, :, None, :] - coords[:, None, :, :]  # (B, N, N, 3)
    dist = diff.square().sum(-1).add(1e-12).sqrt()  # (B, N, N): molecules' Cartesian distances
    if not bool(periodic.any()):
        return dist
    if cell is None:
        raise ValueError("crystals need their lattice vectors: build the batch with `cell` (Atoms.from_pyg)")
    frac = min_image(diff[periodic])  # (C, N, N, 3) in fractional units
    shifted = frac[:, :, :, None, :] + _IMAGES.to(frac)  # (C, N, N, 27, 3)
    cart = shifted @ cell[periodic][:, None, None]  # (C, N, N, 27, 3) Angstrom
    dist = dist.clone()
    dist[periodic] = cart.square().sum(-1).add(1e-12).sqrt().amin(-1)  # (C, N, N)
    return dist


def close_contact_loss(decoded_coords: Tensor, target: Atoms, cutoff: float = 1.0) -> Tensor:
    r"""The close-contact penalty of the module docstring (Angstrom squared per atom).

    Args:
        decoded_coords: ``(B, N, 3)`` decoded positions for molecules and fractional
            coordinates for crystals, in ``target``'s atom order (the decoder outputs
            ``pos`` and ``frac_coords``: pick each system's own, see
            :func:`decoded_coordinates`).
        target: the clean batch (crystals need ``cell``).
        cutoff: ``c`` in Angstrom: pairs further apart than this in the data only have to
            stay ``c`` apart.

    Returns:
        A scalar tensor (0 for the true structures).

    Raises:
        ValueError: a cutoff that is not positive; crystals without ``cell``.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be a positive distance in Angstrom, got {cutoff}")
    periodic = target.dataset_idx == CRYSTAL  # (B,)
    true_coords = decoded_coordinates({"pos": target.pos, "frac_coords": target.frac_coords}, target.dataset_idx)
    d_true = pair_distances(true_coords, target.cell, periodic)  # (B, N, N)
    d_hat = pair_distances(decoded_coords, target.cell, periodic)  # (B, N, N)
    m = target.mask
    upper = torch.ones(m.shape[1], m.shape[1], dtype=torch.bool, device=m.device).triu(1)  # (N, N) i < j
    pairs = m[:, :, None] & m[:, None, :] & upper  # (B, N, N) real pairs, each once
    short = torch.relu(d_true.clamp(max=cutoff) - d_hat)  # (B, N, N)
    return short[pairs].square().sum() / m.sum().clamp(min=1)


def decoded_coordinates(out: dict[str, Tensor], dataset_idx: Tensor) -> Tensor:
    """``(B, N, 3)``: the decoder's ``frac_coords`` for crystals and ``pos`` for molecules."""
    return torch.where((dataset_idx == CRYSTAL)[:, None, None], out["frac_coords"], out["pos"])
