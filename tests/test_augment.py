import torch

from dit3d.tokenizers import MASK_TOKEN, Atoms
import numpy as np
import pytest

from dit3d.tokenizers import CRYSTAL
from dit3d.tokenizers.augment import (augment, center, corrupt, principal_axes, random_rotations,
                                      rotate_and_center)


def atoms(B=4, N=6):
    g = torch.Generator().manual_seed(0)
    mask = torch.arange(N)[None] < torch.tensor([6, 4, 5, 2])[:, None]
    pos = torch.randn(B, N, 3, generator=g) * mask[..., None] + 3.0 * mask[..., None]
    types = torch.randint(1, 10, (B, N), generator=g) * mask
    return Atoms(types, pos, torch.zeros(B, N, 3), mask, torch.zeros(B, 6), torch.zeros(B, dtype=torch.long))


def test_rotations_are_haar_on_so3():
    R = random_rotations(20000, torch.Generator().manual_seed(0))
    assert torch.allclose(torch.linalg.det(R), torch.ones(20000), atol=1e-5)
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(20000, 3, 3), atol=1e-5)
    trace = R.diagonal(dim1=1, dim2=2).sum(-1)
    # Haar on SO(3): E[R] = 0, E[tr R] = 0, E[(tr R)^2] = 1 (one trivial irrep in 3x3)
    assert R.mean(0).abs().max() < 0.02
    assert abs(trace.mean()) < 0.02 and abs(trace.square().mean() - 1) < 0.03


def test_center_and_rotation_keep_distances_and_padding():
    a = atoms()
    c = center(a.pos, a.mask)
    assert torch.allclose((c * a.mask[..., None]).sum(1), torch.zeros(4, 3), atol=1e-5)
    r = rotate_and_center(a, torch.Generator().manual_seed(1))
    d0 = torch.cdist(c, c)[a.mask[:, :, None] & a.mask[:, None, :]]
    d1 = torch.cdist(r.pos, r.pos)[a.mask[:, :, None] & a.mask[:, None, :]]
    assert torch.allclose(d0, d1, atol=1e-4)
    assert torch.all(r.pos[~a.mask] == 0)


def test_corruption_rates_and_clean_padding():
    B, N = 200, 30
    a = Atoms(torch.randint(1, 10, (B, N)), torch.zeros(B, N, 3), torch.zeros(B, N, 3),
              torch.ones(B, N, dtype=torch.bool), torch.zeros(B, 6), torch.zeros(B, dtype=torch.long))
    c = corrupt(a, generator=torch.Generator().manual_seed(0))
    assert abs((c.atom_types == MASK_TOKEN).float().mean() - 0.1) < 0.01
    moved = c.pos.norm(dim=-1) > 0
    assert abs(moved.float().mean() - 0.1) < 0.01
    assert abs(c.pos[moved].std() - 0.1) < 0.01
    small = atoms()
    cs = corrupt(small, 1.0, 1.0)
    assert torch.all(cs.atom_types[~small.mask] == 0) and torch.all(cs.pos[~small.mask] == 0)


# an asymmetric molecule (distinct extents along three axes, no centre of symmetry): its frame is defined
WATER_LIKE = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.1, 0.0], [-0.7, 1.1, 0.2], [0.3, -0.4, 0.9], [1.2, 0.8, -0.5]])


def reference_frame(x: np.ndarray) -> np.ndarray:
    """One molecule's principal-axes rotation, the slow way: SVD of the centred coordinates."""
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)  # rows: axes, largest singular value first
    for k in range(2):
        if ((x @ vt[k]) ** 3).sum() < 0:
            vt[k] = -vt[k]
    return np.stack([vt[0], vt[1], np.cross(vt[0], vt[1])])


def test_principal_axes_match_a_per_molecule_reference_and_ignore_padding():
    a = atoms()
    R = principal_axes(a.pos, a.mask)  # (B, 3, 3)
    for b in range(a.pos.shape[0]):
        n = int(a.mask[b].sum())
        if n < 3:  # two atoms span one axis only: the other two are not defined
            continue
        want = reference_frame(a.pos[b, :n].double().numpy())
        assert np.allclose(R[b].numpy(), want, atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(4), atol=1e-5)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-5)


def test_principal_pose_is_invariant_to_rotation_translation_and_order():
    x = WATER_LIKE[None]  # (1, 5, 3)
    mask = torch.ones(1, 5, dtype=torch.bool)
    pose = center(x, mask) @ principal_axes(x, mask).transpose(1, 2)  # (1, 5, 3)
    var = pose[0].square().sum(0)
    assert var[0] > var[1] > var[2]  # longest extent along x, shortest along z
    assert (pose[0] ** 3).sum(0)[:2].min() > 0  # the sign rule
    R = random_rotations(8, torch.Generator().manual_seed(3))  # (8, 3, 3)
    perm = torch.randperm(5, generator=torch.Generator().manual_seed(4))
    moved = (x @ R.transpose(1, 2) + torch.tensor([1.0, -2.0, 0.5]))[:, perm]  # (8, 5, 3)
    m8 = mask.expand(8, 5)
    again = center(moved, m8) @ principal_axes(moved, m8).transpose(1, 2)
    assert torch.allclose(again, pose[:, perm].expand(8, 5, 3), atol=1e-5)


def test_principal_pose_keeps_a_mirror_image_apart():
    x = WATER_LIKE[None]
    mirror = x * torch.tensor([1.0, 1.0, -1.0])
    mask = torch.ones(1, 5, dtype=torch.bool)
    p = center(x, mask) @ principal_axes(x, mask).transpose(1, 2)
    q = center(mirror, mask) @ principal_axes(mirror, mask).transpose(1, 2)
    assert torch.allclose(p[..., :2], q[..., :2], atol=1e-5)  # same first two axes...
    assert torch.allclose(p[..., 2], -q[..., 2], atol=1e-5)  # ...and the third reversed: a proper rotation each


def test_augment_principal_frame_poses_molecules_and_keeps_crystal_cells():
    a = atoms()
    cell = torch.diag_embed(torch.tensor([[4.0, 5.0, 6.0]]).expand(4, 3)).clone()
    kinds = torch.tensor([0, CRYSTAL, 0, 0])
    frac = torch.rand(4, 6, 3, generator=torch.Generator().manual_seed(5)) * a.mask[..., None]
    pos = torch.where(kinds[:, None, None] == CRYSTAL, frac @ cell, a.pos)
    mixed = Atoms(a.atom_types, pos, frac, a.mask, a.lattice, kinds, cell=cell)
    out = augment(mixed, torch.Generator().manual_seed(0), frame="principal")
    assert torch.equal(out.cell[1], cell[1])  # not rotated
    assert torch.allclose(out.pos[1], (out.frac_coords[1] @ cell[1]) * a.mask[1, :, None], atol=1e-5)
    rotated = augment(mixed, torch.Generator().manual_seed(1))  # molecules turned at random first
    again = augment(rotated, torch.Generator().manual_seed(0), frame="principal")
    for b in (0, 2):  # three or more atoms: defined frames
        assert torch.allclose(again.pos[b], out.pos[b], atol=1e-4)
    assert torch.all(out.pos[~a.mask] == 0)
    with pytest.raises(ValueError, match="frame must be one of"):
        augment(mixed, frame="canonical")
