import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from dit3d.pretrained import PretrainedError
from dit3d.tokenizers import AtomAutoencoder, Atoms
from dit3d.testing import randomize_


def molecule(types, pos):
    n = len(types)
    return Data(atom_types=torch.tensor(types), pos=torch.tensor(pos, dtype=torch.float32),
                frac_coords=torch.zeros(n, 3), lengths=torch.zeros(1, 3), angles=torch.zeros(1, 3),
                dataset_idx=torch.zeros(1, dtype=torch.long), num_nodes=n)


WATER = molecule([8, 1, 1], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
METHANE = molecule([6, 1, 1, 1, 1], [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                     [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])


def test_from_pyg_densifies_with_mask():
    atoms = Atoms.from_pyg(Batch.from_data_list([WATER, METHANE]))
    assert atoms.atom_types.tolist() == [[8, 1, 1, 0, 0], [6, 1, 1, 1, 1]]
    assert atoms.mask.sum(-1).tolist() == [3, 5]
    assert atoms.lattice.shape == (2, 6) and atoms.dataset_idx.tolist() == [0, 0]


def test_autoencoder_shapes_padding_and_permutation_equivariance():
    ae = randomize_(AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4), std=0.1)
    atoms = Atoms.from_pyg(Batch.from_data_list([WATER, METHANE]))
    mean, logvar = ae.encode(atoms)
    assert mean.shape == (2, 5, 4) and torch.all(mean[0, 3:] == 0)
    out = ae.decode(mean, atoms.mask, atoms.dataset_idx)
    assert out["type_logits"].shape == (2, 5, 101) and out["pos"].shape == (2, 5, 3)
    assert out["lattice"].shape == (2, 6)
    # water alone gives the same latents as water padded in a batch
    alone = Atoms.from_pyg(Batch.from_data_list([WATER]))
    assert torch.allclose(ae.encode(alone)[0][0], mean[0, :3], atol=1e-5)
    # atoms are a set: permuting methane's hydrogens permutes its latents
    perm = torch.tensor([0, 2, 1, 4, 3])
    single = Atoms.from_pyg(Batch.from_data_list([METHANE]))
    permuted = Atoms(single.atom_types[:, perm], single.pos[:, perm], single.frac_coords, single.mask,
                     single.lattice, single.dataset_idx)
    assert torch.allclose(ae.encode(permuted)[0][0], ae.encode(single)[0][0][perm], atol=1e-5)


def test_unknown_atomic_numbers_raise():
    ae = AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4)
    bad = Atoms.from_pyg(Batch.from_data_list([molecule([118, 1], [[0, 0, 0], [1, 0, 0]])]))
    with pytest.raises(ValueError, match="atomic numbers"):
        ae.encode(bad)


def test_pretrained_round_trip_and_errors(tmp_path):
    ae = randomize_(AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4))
    ae.save_pretrained(tmp_path / "ae")
    loaded = AtomAutoencoder.from_pretrained(tmp_path / "ae")
    atoms = Atoms.from_pyg(Batch.from_data_list([WATER]))
    assert torch.equal(loaded.encode(atoms)[0], ae.encode(atoms)[0])
    assert not list(tmp_path.glob(".ae.*"))  # no temporary folder left behind
    with pytest.raises(PretrainedError, match="no such pretrained folder"):
        AtomAutoencoder.from_pretrained(tmp_path / "missing")
    (tmp_path / "ae" / "model.safetensors").write_bytes(b"\x00" * 10)  # truncated weights
    with pytest.raises(PretrainedError, match="unreadable"):
        AtomAutoencoder.from_pretrained(tmp_path / "ae")


def test_save_pretrained_never_deletes_foreign_folders(tmp_path):
    ae = AtomAutoencoder(hidden_size=24, depth=1, num_heads=4, latent_dim=4)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("keep me")
    with pytest.raises(PretrainedError, match="refusing to overwrite"):
        ae.save_pretrained(tmp_path / "results")
    assert (tmp_path / "results" / "notes.txt").read_text() == "keep me"
    ae.save_pretrained(tmp_path / "model")
    randomize_(ae)
    ae.save_pretrained(tmp_path / "model")  # a pretrained folder is replaced whole
    assert torch.equal(AtomAutoencoder.from_pretrained(tmp_path / "model").type_embed.weight, ae.type_embed.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "results"]  # no temp or backup left


def test_same_encoder_compares_architecture_and_encoder_weights_only():
    torch.manual_seed(0)
    a = AtomAutoencoder(hidden_size=16, depth=1, num_heads=2, latent_dim=4)
    b = AtomAutoencoder(hidden_size=16, depth=1, num_heads=2, latent_dim=4)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.decoder.final_layer.linear.weight.add_(1.0)  # the decoder may differ
    assert a.same_encoder(b) and set(a.encoder_state()) == set(b.encoder_state())
    assert all(k.split(".")[0] in AtomAutoencoder.ENCODER_PARTS for k in a.encoder_state())
    with torch.no_grad():
        b.encoder.blocks[0].mlp.fc1.weight.mul_(1.01)  # the encoder may not
    assert not a.same_encoder(b)
    assert not a.same_encoder(AtomAutoencoder(hidden_size=16, depth=1, num_heads=2, latent_dim=8))


def test_kl_matches_the_closed_form_over_real_atoms_only():
    mean = torch.tensor([[[1.0, 0.0], [3.0, 3.0]]])  # (B=1, N=2, L=2); the second atom is padding
    logvar = torch.tensor([[[0.0, math.log(2.0)], [5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    # 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2) over the real atom's two channels
    expected = 0.5 * ((1 + 1 - 1 - 0) + (0 + 2 - 1 - math.log(2.0)))
    assert math.isclose(AtomAutoencoder.kl(mean, logvar, mask).item(), expected, rel_tol=1e-6)
    with pytest.raises(ValueError, match="no True"):
        AtomAutoencoder.kl(mean, logvar, torch.zeros(1, 2, dtype=torch.bool))
