"""Training augmentations of dense atom batches: Haar rotations, centring, corruption."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from dit3d.tokenizers.atoms import MASK_TOKEN, Atoms


def random_rotations(n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """Rotation matrices drawn from the Haar (uniform) measure on SO(3).

    QR of a Gaussian matrix with the signs of ``diag(R)`` moved into ``Q`` is Haar on
    O(3) (Mezzadri 2007); flipping one column where ``det = -1`` maps it onto SO(3)
    without bias. (Normalising uniform draws in a cube, or Euler angles drawn
    uniformly, are not uniform.)

    Shapes:
        -> ``(n, 3, 3)``
    """
    a = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]  # Haar on O(3)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det[:, None]  # det -1 -> +1
    return q.float().to(device)


def center(pos: Tensor, mask: Tensor) -> Tensor:
    """Subtract each system's mean position over its real atoms; padding stays zero.

    Shapes:
        pos: ``(B, N, 3)``; mask: ``(B, N)`` -> ``(B, N, 3)``
    """
    w = mask[..., None].to(pos.dtype)
    mean = (pos * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 3)
    return (pos - mean) * w


def rotate_and_center(atoms: Atoms, generator: torch.Generator | None = None) -> Atoms:
    """Centre every system and apply an independent Haar-random rotation to its
    Cartesian positions (fractional coordinates are rotation invariant)."""
    rot = random_rotations(atoms.pos.shape[0], generator, atoms.pos.device)  # (B, 3, 3)
    pos = center(atoms.pos, atoms.mask) @ rot.transpose(1, 2)  # (B, N, 3)
    return replace(atoms, pos=pos)


def corrupt(atoms: Atoms, mask_prob: float = 0.1, jitter_prob: float = 0.1, jitter_std: float = 0.1,
            generator: torch.Generator | None = None) -> Atoms:
    """Denoising corruption of the encoder input (targets stay clean): each real atom's
    type is replaced by ``MASK_TOKEN`` with probability ``mask_prob``, and its position
    gets ``N(0, jitter_std^2)`` noise (Angstrom) with probability ``jitter_prob``."""
    B, N = atoms.mask.shape
    u = torch.rand(2, B, N, generator=generator).to(atoms.pos.device)
    masked = (u[0] < mask_prob) & atoms.mask
    jittered = (u[1] < jitter_prob) & atoms.mask
    noise = torch.randn(B, N, 3, generator=generator).to(atoms.pos.device) * jitter_std
    types = atoms.atom_types.masked_fill(masked, MASK_TOKEN)
    pos = atoms.pos + noise * jittered[..., None]
    return replace(atoms, atom_types=types, pos=pos)
