"""Training augmentations of dense atom batches: Haar rotations, centring, periodic
translations of crystals, corruption."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from dit3d.tokenizers.atoms import CRYSTAL, MASK_TOKEN, MOLECULE, Atoms


def random_rotations(n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> Tensor:
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
    Cartesian positions (fractional coordinates are rotation invariant). Molecules only:
    it leaves cells alone, so use :func:`augment` for batches with crystals."""
    rot = random_rotations(atoms.pos.shape[0], generator, atoms.pos.device)  # (B, 3, 3)
    pos = center(atoms.pos, atoms.mask) @ rot.transpose(1, 2)  # (B, N, 3)
    return replace(atoms, pos=pos)


def wrap_frac(frac: Tensor) -> Tensor:
    """Fractional coordinates wrapped into [0, 1) (``x - floor(x)``; a float rounding
    up to exactly 1 becomes 0)."""
    out = frac - torch.floor(frac)
    return out.masked_fill(out >= 1.0, 0.0)


def center_molecules(atoms: Atoms) -> Atoms:
    """The evaluation frame: molecules centred on their mean position, crystals left as
    they are (``pos = frac_coords @ cell``, not centred).

    Shapes:
        see :class:`~dit3d.tokenizers.Atoms`
    """
    is_mol = (atoms.dataset_idx == MOLECULE)[:, None, None]  # (B, 1, 1)
    return replace(atoms, pos=torch.where(is_mol, center(atoms.pos, atoms.mask), atoms.pos))


def principal_axes(pos: Tensor, mask: Tensor) -> Tensor:
    r"""Each system's principal-axes frame: a proper rotation :math:`R` whose rows are the
    eigenvectors of its centred second-moment matrix :math:`C = \sum_i x_i x_i^\top`,
    largest eigenvalue first, so that :math:`R (x_i - \bar x)` puts the system's longest
    extent along x and its shortest along z.

    Eigenvectors have no sign; each of the first two is signed so that the third moment of
    the atoms' coordinates along it, :math:`\sum_i (e_k \cdot x_i)^3`, is positive (0
    counts as positive), and the third is :math:`e_1 \times e_2`, so :math:`\det R = 1`
    and mirror images stay mirror images. The frame is a function of the geometry alone,
    invariant to rotating, translating or reordering the atoms, except where it is not
    defined: equal eigenvalues (symmetric tops such as methane) or a zero third moment
    (centrosymmetric systems) leave a choice, made here by the eigen-solver and the sign
    rule, which a rotated copy may make differently. A diatomic is always centrosymmetric in
    geometry, so its direction along x is left to rounding (QM9 train holds none: three atoms at least).

    Args:
        pos: positions, centred or not (padding ignored).
        mask: real atoms.

    Shapes:
        pos: ``(B, N, 3)``; mask: ``(B, N)`` -> ``(B, 3, 3)``
    """
    x = center(pos.double(), mask)  # (B, N, 3), zero at padding
    _, vecs = torch.linalg.eigh(x.transpose(1, 2) @ x)  # ascending eigenvalues; columns are the axes
    axes = vecs.flip(-1).transpose(1, 2)  # (B, 3, 3): rows e1, e2, e3, largest extent first
    skew = ((x @ axes.transpose(1, 2)) ** 3).sum(1)  # (B, 3): third moment along each axis
    sign = torch.where(skew[:, :2] < 0, -1.0, 1.0).to(axes.dtype)  # (B, 2)
    e1, e2 = axes[:, 0] * sign[:, :1], axes[:, 1] * sign[:, 1:]  # (B, 3) each
    return torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=1).to(pos.dtype)  # (B, 3, 3)


FRAMES = ("random", "principal")


def augment(atoms: Atoms, generator: torch.Generator | None = None, translate_crystals: bool = True,
            frame: str = "random") -> Atoms:
    r"""Random rigid motions of a mixed molecule/crystal batch, one per system (or
    canonical poses, with ``frame="principal"``).

    With ``frame="random"`` every system gets an independent Haar-random rotation
    :math:`R \in SO(3)` (:func:`random_rotations`). With ``frame="principal"`` nothing is
    rotated at random: each molecule is turned into its :func:`principal_axes` frame (a
    canonical pose) and crystals keep their cells' orientation, which is canonical already
    (rebuilt from the Niggli-reduced lattice parameters by :mod:`dit3d.data.crystals`).

    * Molecules are centred and rotated: :math:`x_i \leftarrow R (x_i - \bar x)`.
    * Crystals rotate their cell and positions together. With lattice vectors as the rows
      of ``cell`` (:math:`x_i = f_i L`), :math:`L \leftarrow L R^\top` and
      :math:`x_i = f_i L R^\top`; fractional coordinates, lengths and angles are
      invariant. With ``translate_crystals``, a uniform shift :math:`t \sim U[0, 1)^3`
      moves all atoms of a crystal, :math:`f_i \leftarrow (f_i + t) \bmod 1`, and the
      positions are recomputed, so ``pos == frac_coords @ cell`` holds afterwards.
      Crystal positions are not centred (the cell's origin is the frame).

    With ``frame="random"``, molecule-only batches draw exactly what :func:`rotate_and_center` draws (the
    translations are drawn only when the batch holds crystals), so it reproduces it.

    Args:
        atoms: the batch; crystals need ``atoms.cell``.
        generator: random source (None: the global one).
        translate_crystals: apply the periodic translations.
        frame: ``"random"`` (rotation augmentation) or ``"principal"`` (canonical poses).

    Shapes:
        see :class:`~dit3d.tokenizers.Atoms`; padding stays zero.

    Raises:
        ValueError: the batch has crystals but no ``cell``, or ``frame`` is unknown.
    """
    B = atoms.pos.shape[0]
    is_xtal = atoms.dataset_idx == CRYSTAL  # (B,)
    if frame == "random":
        rot = random_rotations(B, generator, atoms.pos.device)  # (B, 3, 3)
    elif frame == "principal":
        eye = torch.eye(3, dtype=atoms.pos.dtype, device=atoms.pos.device).expand(B, 3, 3)
        rot = torch.where(is_xtal[:, None, None], eye, principal_axes(atoms.pos, atoms.mask))  # (B, 3, 3)
    else:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    pos = center(atoms.pos, atoms.mask) @ rot.transpose(1, 2)  # (B, N, 3): molecules' frame
    if not bool(is_xtal.any()):
        return replace(atoms, pos=pos)
    if atoms.cell is None:
        raise ValueError("augmenting crystals needs their lattice vectors (atoms.cell); build the batch with "
                         "Atoms.from_pyg from data that has a 'cell' field (dit3d.data.CrystalDataset has)")
    w = atoms.mask[..., None].to(atoms.frac_coords.dtype)  # (B, N, 1)
    frac = atoms.frac_coords
    if translate_crystals:
        shift = torch.rand(B, 1, 3, generator=generator).to(frac.device, frac.dtype)  # (B, 1, 3)
        frac = torch.where(is_xtal[:, None, None], wrap_frac(frac + shift) * w, frac)
    cell = torch.where(is_xtal[:, None, None], atoms.cell @ rot.transpose(1, 2), atoms.cell)  # (B, 3, 3)
    xtal_pos = (frac @ cell) * w  # (B, N, 3)
    pos = torch.where(is_xtal[:, None, None], xtal_pos, pos)
    return replace(atoms, pos=pos, frac_coords=frac, cell=cell)


def corrupt(atoms: Atoms, mask_prob: float = 0.1, jitter_prob: float = 0.1, jitter_std: float = 0.1,
            generator: torch.Generator | None = None) -> Atoms:
    r"""Denoising corruption of the encoder input (targets stay clean): each real atom's
    type is replaced by ``MASK_TOKEN`` with probability ``mask_prob``, and its position
    gets ``N(0, jitter_std^2)`` noise (Angstrom) with probability ``jitter_prob``. A jittered
    crystal atom's fractional coordinates follow its position,
    :math:`f_i = (x_i L^{-1}) \bmod 1`, so the encoder's two views of it agree (as in ADiT)."""
    B, N = atoms.mask.shape
    u = torch.rand(2, B, N, generator=generator).to(atoms.pos.device)
    masked = (u[0] < mask_prob) & atoms.mask
    jittered = (u[1] < jitter_prob) & atoms.mask
    noise = torch.randn(B, N, 3, generator=generator).to(atoms.pos.device) * jitter_std
    types = atoms.atom_types.masked_fill(masked, MASK_TOKEN)
    pos = atoms.pos + noise * jittered[..., None]
    frac = atoms.frac_coords
    moved = jittered & (atoms.dataset_idx == CRYSTAL)[:, None]  # (B, N)
    if atoms.cell is not None and bool(moved.any()):
        xtal = atoms.dataset_idx == CRYSTAL
        inv = torch.zeros_like(atoms.cell)
        inv[xtal] = torch.linalg.inv(atoms.cell[xtal])  # (B, 3, 3); molecules' zero cells stay zero
        frac = torch.where(moved[..., None], wrap_frac(pos @ inv), frac)
    return replace(atoms, atom_types=types, pos=pos, frac_coords=frac)
