import torch

from dit3d.tokenizers import MASK_TOKEN, Atoms
from dit3d.tokenizers.augment import center, corrupt, random_rotations, rotate_and_center


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
