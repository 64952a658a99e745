"""ADiT probes: decoder tolerance to latent perturbations and partial flows from real latents."""
import pytest
import torch

from dit3d.api import MoleculeGenerator
from dit3d.models import ADiTLatentModule
from dit3d.models.adit_probes import decoder_tolerance, partial_flow
from dit3d.models.adit_sampling import decode_atoms
from dit3d.testing import randomize_
from dit3d.tokenizers import Atoms
from dit3d.tokenizers.augment import center_molecules, random_rotations


@pytest.fixture
def atoms() -> Atoms:
    g = torch.Generator().manual_seed(0)
    return center_molecules(Atoms(torch.tensor([[8, 1, 1], [6, 8, 0]]), torch.randn(2, 3, 3, generator=g),
                                  torch.zeros(2, 3, 3), torch.tensor([[True] * 3, [True, True, False]]),
                                  torch.zeros(2, 6), torch.tensor([0, 0])))


@pytest.fixture
def gen() -> MoleculeGenerator:
    ae = {"hidden_size": 32, "depth": 1, "num_heads": 4, "latent_dim": 4}
    latent = ADiTLatentModule(ae, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, max_atoms=8)
    randomize_(latent, std=0.05)
    latent.atom_count_hist[0, 3] = 1
    return MoleculeGenerator.from_lightning(latent)


def test_decoder_tolerance_at_zero_is_the_reconstruction(gen, atoms):
    out = decoder_tolerance(gen.autoencoder, atoms, [0.0, 5.0], generator=torch.Generator().manual_seed(0))
    mean, _ = gen.autoencoder.encode(atoms)
    types, pos = decode_atoms(gen.autoencoder, mean, atoms.mask)
    assert [t.shape[0] for t, _ in out[0.0]] == [3, 2]
    assert torch.equal(out[0.0][1][0], types[1, :2]) and torch.allclose(out[0.0][0][1], pos[0].double())
    assert not torch.allclose(out[5.0][0][1], out[0.0][0][1])


def test_partial_flow_from_nearly_clean_latents_stays_close(gen, atoms):
    out = partial_flow(gen, atoms, [0.0, 0.999], steps=2, generator=torch.Generator().manual_seed(0))
    (decoded, rmse_noise), (_, rmse_clean) = out[0.0], out[0.999]
    assert len(decoded) == 2 and decoded[1][1].shape == (2, 3)
    assert rmse_clean < 0.05 < rmse_noise
    with pytest.raises(ValueError, match=r"t0 must lie in \[0, 1\)"):
        partial_flow(gen, atoms, [1.0])


def test_probes_refuse_bad_sigmas_and_mixed_kinds(gen, atoms):
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="sigmas must be finite and >= 0"):
            decoder_tolerance(gen.autoencoder, atoms, [0.0, bad])
    mixed = Atoms(atoms.atom_types, atoms.pos, atoms.frac_coords, atoms.mask, atoms.lattice, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="mixes kinds"):
        decoder_tolerance(gen.autoencoder, mixed, [0.0])
    with pytest.raises(ValueError, match="mixes kinds"):
        partial_flow(gen, mixed, [0.5])


def test_partial_flow_gives_an_element_conditioned_dit_the_real_elements(atoms):
    ae = {"hidden_size": 32, "depth": 1, "num_heads": 4, "latent_dim": 4}
    latent = ADiTLatentModule(ae, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, max_atoms=8,
                              element_conditioning=True)
    randomize_(latent, std=0.05)
    latent.atom_count_hist[0, 3] = 1
    latent.compositions = torch.zeros(1, 101, dtype=torch.long)
    latent.compositions[0, [1, 8]] = torch.tensor([2, 1])
    latent.composition_weight = torch.tensor([[1.0], [0.0]])
    gen = MoleculeGenerator.from_lightning(latent)

    def flow_end() -> torch.Tensor:
        (decoded, rmse), = partial_flow(gen, atoms, [0.5], steps=2, generator=torch.Generator().manual_seed(0)).values()
        return torch.tensor(rmse)

    before = flow_end()
    shift = torch.randn(2, gen.dit.token_embed.embedding_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # a random direction: a constant one would vanish in the layer norms
        gen.dit.token_embed.weight[0] += shift[0]  # label 0: padding only, which attention masks out
    assert torch.allclose(flow_end(), before)
    with torch.no_grad():
        gen.dit.token_embed.weight[8] += shift[1]  # the oxygens
    assert not torch.allclose(flow_end(), before)


def test_partial_flow_gives_no_elements_for_a_kind_outside_the_conditioned_ones(atoms):
    ae = {"hidden_size": 32, "depth": 1, "num_heads": 4, "latent_dim": 4}
    latent = ADiTLatentModule(ae, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, max_atoms=8,
                              element_conditioning="crystals")
    randomize_(latent, std=0.05)
    latent.atom_count_hist[:, 3] = 1
    latent.compositions = torch.zeros(1, 101, dtype=torch.long)
    latent.compositions[0, 6] = 2
    latent.composition_weight = torch.tensor([[0.0], [1.0]])  # crystals' formulas only
    gen = MoleculeGenerator.from_lightning(latent)
    assert gen.element_kinds == (1,) and not gen.element_conditioned

    def flow_end() -> torch.Tensor:
        (_, rmse), = partial_flow(gen, atoms, [0.5], steps=2, generator=torch.Generator().manual_seed(0)).values()
        return torch.tensor(rmse)

    before = flow_end()
    shift = torch.randn(2, gen.dit.token_embed.embedding_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gen.dit.token_embed.weight[8] += shift[1]  # oxygen: not given to the DiT for molecules
    assert torch.allclose(flow_end(), before)
    with torch.no_grad():
        gen.dit.token_embed.weight[0] += shift[0]  # label 0, which every molecule token gets
    assert not torch.allclose(flow_end(), before)


def test_partial_flow_poses_molecules_as_a_principal_frame_model_learnt_them(atoms):
    """A ``frame="principal"`` model starts from the latents of the principal-axes pose, so a
    rotated copy of the batch gives the same flow; a random-frame model takes the pose given."""
    ae = {"hidden_size": 32, "depth": 1, "num_heads": 4, "latent_dim": 4}
    latent = ADiTLatentModule(ae, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, max_atoms=8,
                              frame="principal")
    randomize_(latent, std=0.05)
    latent.atom_count_hist[0, 3] = 1
    principal = MoleculeGenerator.from_lightning(latent)
    plain = MoleculeGenerator.from_lightning(latent)
    plain.frame = "random"
    first = atoms.select(torch.tensor([True, False]))  # water-like: three atoms, a defined frame
    turned = Atoms(first.atom_types, first.pos @ random_rotations(1, torch.Generator().manual_seed(2))[0].T,
                   first.frac_coords, first.mask, first.lattice, first.dataset_idx)

    def rmse(gen, batch) -> float:
        (_, value), = partial_flow(gen, batch, [0.5], steps=2, generator=torch.Generator().manual_seed(0)).values()
        return value

    assert rmse(principal, turned) == pytest.approx(rmse(principal, first), rel=1e-4)
    assert rmse(plain, turned) != pytest.approx(rmse(plain, first), rel=1e-4)
