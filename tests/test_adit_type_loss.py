"""ADiTLatentModule's decoder-aware atom-type loss (``type_loss_weight``) on tiny real molecules."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from dit3d.models import ADiTLatentModule
from dit3d.testing import randomize_
from dit3d.tokenizers import Atoms

AE = {"hidden_size": 32, "depth": 1, "num_heads": 4, "latent_dim": 4}


def molecule(types: list[int], pos: list[list[float]]) -> Data:
    n = len(types)
    z1 = torch.zeros(1, 3)
    return Data(atom_types=torch.tensor(types), pos=torch.tensor(pos), frac_coords=torch.zeros(n, 3),
                cell=torch.zeros(1, 3, 3), lengths=z1, angles=z1.clone(), dataset_idx=torch.zeros(1, dtype=torch.long),
                spacegroup=torch.zeros(1, dtype=torch.long), num_atoms=torch.tensor([n]))


WATER = molecule([8, 1, 1], [[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
AMMONIA = molecule([7, 1, 1, 1], [[0.0, 0, 0.1], [0.94, 0, -0.28], [-0.47, 0.81, -0.28], [-0.47, -0.81, -0.28]])


def module(weight: float, prediction: str = "velocity", self_condition_prob: float = 0.5) -> ADiTLatentModule:
    torch.manual_seed(0)
    m = ADiTLatentModule(AE, preset="DiT-Mini", depth=1, hidden_size=32, num_heads=4, type_loss_weight=weight,
                         prediction=prediction, self_condition_prob=self_condition_prob)
    randomize_(m.autoencoder, std=0.3)  # a decoder whose types depend on the latent
    randomize_(m.dit, std=0.1)  # past adaLN-Zero's zero gates, so every layer gets gradients
    return m


def batch() -> Batch:
    return Batch.from_data_list([WATER, AMMONIA])


@pytest.mark.parametrize("prediction", ["velocity", "x1"])
def test_type_loss_of_the_exact_prediction_is_the_decoders_own_cross_entropy(prediction):
    m = module(1.0, prediction)
    atoms = Atoms.from_pyg(batch())
    z = m.encode(atoms)  # (2, 4, 4) standardised
    x0 = torch.randn(z.shape) * atoms.mask[..., None]
    t = torch.tensor([0.3, 0.8])
    x_t = m.flow.interpolate(x0, z, t)
    exact = z - x0 if prediction == "velocity" else z  # either way the clean estimate is z itself
    loss = m.type_loss(x_t, t, exact, atoms)
    logits = m.autoencoder.decode(z * m.latent_std + m.latent_mean, atoms.mask, atoms.dataset_idx)["type_logits"]
    ce = F.cross_entropy(logits[atoms.mask], atoms.atom_types[atoms.mask], reduction="none")  # (7,)
    weights = torch.tensor([0.3] * 3 + [0.8] * 4)  # each atom weighted by its molecule's time
    torch.testing.assert_close(loss, (ce * weights).mean())
    assert m.type_loss(x_t, torch.zeros(2), exact, atoms) == 0  # pure noise: nothing asked


def test_training_step_adds_the_weighted_type_loss_and_trains_only_the_dit():
    logged: dict[str, float] = {}
    losses, type_losses = {}, []
    for weight in (0.0, 0.5):
        m = module(weight, self_condition_prob=1.0)  # two network calls per step: the loss must use the second
        m.log = lambda name, value, **kw: logged.__setitem__(name, float(value.detach()))
        scored = m.type_loss
        m.type_loss = lambda *args: type_losses.append(scored(*args)) or type_losses[-1]
        torch.manual_seed(1)
        losses[weight] = m.training_step(batch(), 0)
    assert losses[0.5].item() == pytest.approx(losses[0.0].item() + 0.5 * logged["train/type_loss"], rel=1e-5)
    (type_loss,) = type_losses
    dit_params = list(m.dit.parameters())
    grads = torch.autograd.grad(type_loss, dit_params, allow_unused=True, retain_graph=True)
    assert sum(int(g is not None and g.abs().sum() > 0) for g in grads) > len(dit_params) // 2  # through the DiT
    losses[0.5].backward()
    assert all(p.grad is None for p in m.autoencoder.parameters())


def test_a_numpy_weight_is_stored_as_a_float():
    import numpy as np

    m = ADiTLatentModule(AE, preset="DiT-Mini", depth=1, type_loss_weight=np.float64(0.5))
    assert type(m.hparams["type_loss_weight"]) is float


def test_type_loss_weight_must_be_a_finite_non_negative_number():
    with pytest.raises(ValueError, match="type_loss_weight must be a finite float >= 0"):
        ADiTLatentModule(AE, preset="DiT-Mini", depth=1, type_loss_weight=-1.0)
