"""The close-contact penalty of ADiT decoders (dit3d.models.adit_contacts)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from dit3d.models import ADiTAutoencoderModule
from dit3d.models.adit_contacts import close_contact_loss, decoded_coordinates, pair_distances
from dit3d.tokenizers.atoms import CRYSTAL, MOLECULE, Atoms


def batch(coords: list[list[list[float]]], kinds: list[int], cell: torch.Tensor | None = None) -> Atoms:
    """Systems of equal size: Cartesian positions for molecules, fractional coordinates for crystals."""
    x = torch.tensor(coords, dtype=torch.float32)  # (B, N, 3)
    kind = torch.tensor(kinds)
    periodic = (kind == CRYSTAL)[:, None, None]
    B, N, _ = x.shape
    if cell is None:
        cell = torch.zeros(B, 3, 3)
    return Atoms(atom_types=torch.full((B, N), 6), pos=torch.where(periodic, x @ cell, x),
                 frac_coords=torch.where(periodic, x, torch.zeros_like(x)), mask=torch.ones(B, N, dtype=torch.bool),
                 lattice=torch.zeros(B, 6), dataset_idx=kind, cell=cell)


def test_pair_distances_of_a_molecule_are_cartesian():
    atoms = batch([[[0.0, 0, 0], [3.0, 4.0, 0], [0, 0, 1.5]]], [MOLECULE])
    d = pair_distances(atoms.pos, None, atoms.dataset_idx == CRYSTAL)
    assert torch.allclose(d[0], torch.tensor([[0.0, 5, 1.5], [5, 0, 27.25 ** 0.5], [1.5, 27.25 ** 0.5, 0]]), atol=1e-5)


def test_pair_distances_of_a_crystal_take_the_nearest_image():
    cell = (4.0 * torch.eye(3))[None]  # cubic, 4 Angstrom
    atoms = batch([[[0.05, 0.5, 0.5], [0.95, 0.5, 0.5]]], [CRYSTAL], cell)
    d = pair_distances(atoms.frac_coords, atoms.cell, atoms.dataset_idx == CRYSTAL)
    assert d[0, 0, 1].item() == pytest.approx(0.4, abs=1e-5)  # across the face, not 3.6 through the cell


def test_pair_distances_match_pymatgen_on_a_skewed_reduced_cell():
    rng = np.random.default_rng(0)
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 75.0, 100.0, 112.0)
    frac = rng.random((7, 3))
    structure = Structure(lattice.get_niggli_reduced_lattice(), ["Si"] * 7, frac)
    cell = torch.tensor(structure.lattice.matrix, dtype=torch.float32)[None]
    atoms = batch([structure.frac_coords.tolist()], [CRYSTAL], cell)
    d = pair_distances(atoms.frac_coords, atoms.cell, atoms.dataset_idx == CRYSTAL)[0].numpy()
    np.testing.assert_allclose(d, structure.distance_matrix, atol=1e-4)  # pymatgen: the periodic reference


def test_the_true_structure_costs_nothing_and_a_collapsed_pair_costs_its_shortfall():
    atoms = batch([[[0.0, 0, 0], [1.5, 0, 0], [0, 3.0, 0]]], [MOLECULE])
    assert close_contact_loss(atoms.pos, atoms).item() == 0.0
    collapsed = atoms.pos.clone()
    collapsed[0, 1, 0] = 0.4  # 1.5 apart in truth, 0.4 decoded: short of the 1.0 cutoff by 0.6
    assert close_contact_loss(collapsed, atoms, cutoff=1.0).item() == pytest.approx(0.6 ** 2 / 3, rel=1e-5)
    assert close_contact_loss(collapsed, atoms, cutoff=1.2).item() == pytest.approx(0.8 ** 2 / 3, rel=1e-5)
    # a pair the data holds closer than the cutoff only has to keep its own distance
    near = batch([[[0.0, 0, 0], [0.9, 0, 0], [0, 3.0, 0]]], [MOLECULE])
    assert close_contact_loss(near.pos, near, cutoff=1.0).item() == 0.0
    squeezed = near.pos.clone()
    squeezed[0, 1, 0] = 0.7
    assert close_contact_loss(squeezed, near, cutoff=1.0).item() == pytest.approx(0.2 ** 2 / 3, rel=1e-4)


def test_padding_is_ignored_and_crystals_use_the_periodic_distance():
    cell = torch.stack([torch.zeros(3, 3), 4.0 * torch.eye(3)])
    atoms = batch([[[0.0, 0, 0], [2.0, 0, 0]], [[0.05, 0.5, 0.5], [0.5, 0.5, 0.5]]], [MOLECULE, CRYSTAL], cell)
    atoms.mask[0, 1] = False  # the molecule has one real atom
    decoded = decoded_coordinates({"pos": torch.zeros(2, 2, 3), "frac_coords": torch.tensor(
        [[[0.0, 0, 0], [0, 0, 0]], [[0.05, 0.5, 0.5], [0.975, 0.5, 0.5]]])}, atoms.dataset_idx)
    # the crystal's pair: 1.8 Angstrom apart in truth, decoded 0.3 apart across the periodic face
    expected = (1.0 - 0.3) ** 2 / 3  # three real atoms in the batch
    assert close_contact_loss(decoded, atoms, cutoff=1.0).item() == pytest.approx(expected, rel=1e-4)


def test_the_gradient_pushes_a_collapsed_pair_apart():
    atoms = batch([[[0.0, 0, 0], [1.5, 0, 0]]], [MOLECULE])
    decoded = torch.tensor([[[0.0, 0, 0], [0.3, 0, 0]]], requires_grad=True)
    close_contact_loss(decoded, atoms).backward()  # (1.0 - (x1 - x0))^2 / 2 atoms
    assert decoded.grad[0, :, 0].tolist() == pytest.approx([0.7, -0.7], rel=1e-5)  # descent moves them apart
    assert decoded.grad[0, :, 1:].abs().max() == 0


def test_bad_arguments_say_what_to_give():
    atoms = batch([[[0.0, 0, 0], [1.5, 0, 0]]], [MOLECULE])
    with pytest.raises(ValueError, match="cutoff"):
        close_contact_loss(atoms.pos, atoms, cutoff=0.0)
    crystal = batch([[[0.0, 0, 0], [0.5, 0, 0]]], [CRYSTAL], 4.0 * torch.eye(3)[None])
    crystal.cell = None
    with pytest.raises(ValueError, match="cell"):
        close_contact_loss(crystal.frac_coords, crystal)
    for bad in ({"contact_weight": -1.0}, {"contact_cutoff": 0.0}):
        with pytest.raises(ValueError, match="contact_weight must be >= 0 and contact_cutoff > 0"):
            ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, **bad)


def test_the_autoencoder_module_adds_the_weighted_penalty():
    module = ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, contact_weight=30.0)
    atoms = batch([[[0.0, 0, 0], [1.5, 0, 0]]], [MOLECULE])
    losses = {k: torch.tensor(0.0) for k in ("type_molecule", "type_crystal", "pos", "frac", "lattice", "kl")}
    assert module.total_loss(losses, atoms).item() == 0.0
    losses["contact"] = torch.tensor(0.5)
    assert module.total_loss(losses, atoms).item() == pytest.approx(15.0)


def test_the_training_step_adds_the_penalty_only_when_weighted(monkeypatch):
    """The step computes the penalty on the decoded coordinates of the clean batch and adds
    weight x penalty to the loss; with weight 0 it never computes it."""
    from torch_geometric.data import Batch, Data

    import dit3d.models.adit_autoencoder as stage1

    calls = []

    def fake_penalty(coords, target, cutoff):
        calls.append((coords.shape, cutoff))
        return torch.tensor(0.25)

    monkeypatch.setattr(stage1, "close_contact_loss", fake_penalty)
    graphs = [Data(atom_types=torch.tensor([6, 1, 8]), pos=torch.randn(3, 3), frac_coords=torch.zeros(3, 3),
                   lengths=torch.zeros(1, 3), angles=torch.zeros(1, 3), dataset_idx=torch.tensor([MOLECULE]))
              for _ in range(2)]
    batch = Batch.from_data_list(graphs)
    losses = []
    for weight in (0.0, 30.0):
        torch.manual_seed(0)
        module = ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, contact_weight=weight,
                                       contact_cutoff=1.2)
        module.log = module.log_dict = lambda *a, **k: None  # no trainer attached
        torch.manual_seed(1)
        losses.append(module.training_step(batch, 0).item())
    assert calls == [(torch.Size([2, 3, 3]), 1.2)]  # once, for the weighted module
    assert losses[1] - losses[0] == pytest.approx(30.0 * 0.25, rel=1e-4)
