"""``python -m dit3d.bench adit-qm9``: ADiT train-step and sampling speed, shipped-checkpoint quality.

- ``vae_step_s``: autoencoder at the paper size (encoder and decoder: 8 blocks, 512 wide,
  8 heads, latent 8), one train step (augment, forward, backward, AdamW) on a batch of 64
  real QM9 training molecules.
- ``dit_step_s``: latent DiT-S on the same batch, self-conditioning at its 50% rate
  (the mean of a step with and a step without the extra no-grad pass).
- ``*_grouped``: the same on the median batch of size-grouped batching (what the CPU
  configs train on), with the padding fractions of both batches.
- ``sample_100_s``: sample and decode 100 molecules (``sample_arrays``) with the shipped
  checkpoint's default settings; ``sample_100_mols_s`` adds RDKit bond perception;
  ``sample_100_unguided_s`` (checkpoints that sample with autoguidance): the same with
  ``autoguidance=1``, the guide's network calls left out.
- ``sample_100_int8_s`` and ``int8``: the same sampling time and quality with the latent
  DiT's attention and MLP layers in int8 (:meth:`~dit3d.api.MoleculeGenerator.quantize_int8`).
- quality of the shipped checkpoint on ``num_samples`` molecules (seed 0) under both
  protocols; top-level ``validity`` and ``uniqueness`` are the ADiT protocol's,
  ``mol_stability`` the EDM protocol's; ``odd_electron``, the share of samples whose
  composition has an odd electron count (radicals as neutral molecules: never stable, never
  valid under the ADiT protocol, none in QM9), tells composition failures from geometry
  failures.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch_geometric.loader import DataLoader

from dit3d.bench.timing import median_time


def qm9_batch(size: int = 64, seed: int = 0, grouped: bool = False):
    """A random batch of real QM9 training molecules, or (``grouped``) the median-size
    batch of the first epoch of :class:`~dit3d.data.SizeGroupedBatchSampler`, which is
    what the CPU configs feed the latent DiT."""
    from dit3d.data import QM9, SizeGroupedBatchSampler, atom_counts

    ds = QM9(split="train")
    if grouped:
        batches = list(SizeGroupedBatchSampler(atom_counts(ds), size, seed=seed))
        batches = sorted((b for b in batches if len(b) == size), key=lambda b: int(atom_counts(ds)[b].sum()))
        idx = torch.tensor(batches[len(batches) // 2])
    else:
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:size]
    return next(iter(DataLoader(ds[idx], batch_size=size)))


def vae_step_time(batch, repeats: int) -> float:
    """Median seconds of one train step of the paper-sized ADiT autoencoder on ``batch``."""
    from dit3d.models import ADiTAutoencoderModule

    module = ADiTAutoencoderModule(hidden_size=512, depth=8, num_heads=8, latent_dim=8)
    module.log = module.log_dict = lambda *a, **k: None  # no trainer attached
    opt = module.configure_optimizers()["optimizer"]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        module.training_step(batch, 0).backward()
        opt.step()

    return median_time(step, repeats)


def dit_step_time(batch, repeats: int) -> dict[str, float]:
    """Median seconds of a latent DiT-S train step on ``batch``: without, with self-conditioning, and mean."""
    from dit3d.nn import DiT
    from dit3d.objectives import FlowMatching
    from dit3d.tokenizers import Atoms

    atoms = Atoms.from_pyg(batch)
    z = torch.randn(*atoms.mask.shape, 8) * atoms.mask[..., None]  # latents: only shapes matter here
    dit = DiT(8, time_scale=1000.0, preset="DiT-S", num_classes=2, self_condition=True)
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-4, fused=True)
    times = {}
    for prob in (0.0, 1.0):  # without / with the self-conditioning pass
        flow = FlowMatching(self_condition_prob=prob)  # at 0 the DiT sees zeros as self-condition

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            flow.training_loss(dit, z, mask=atoms.mask, y=atoms.dataset_idx).backward()
            opt.step()

        times[prob] = median_time(step, repeats)
    return {"dit_step_s": 0.5 * (times[0.0] + times[1.0]), "dit_step_s_no_sc": times[0.0],
            "dit_step_s_sc": times[1.0]}


def quality(gen, num_samples: int) -> dict[str, Any]:
    """QM9 quality of ``num_samples`` molecules from ``gen`` (seed 0) under the EDM and ADiT protocols."""
    from dit3d.data import qm9_smiles
    from dit3d.metrics import evaluate_molecules

    arrays = gen.sample_arrays(num_samples, seed=0)
    train = qm9_smiles("train")
    edm = evaluate_molecules(arrays, "edm", train)
    adit = evaluate_molecules(arrays, "adit", train)
    pick = ("atom_stability", "mol_stability", "validity", "uniqueness", "novelty")
    return {"validity": adit["validity"], "mol_stability": edm["mol_stability"], "uniqueness": adit["uniqueness"],
            "edm": {k: edm[k] for k in pick}, "adit": {k: adit[k] for k in pick}, "num_samples": num_samples,
            "odd_electron": edm["counts"]["odd_electron"] / num_samples}


def run(quick: bool = False, checkpoint: str = "adit-qm9-cpu") -> dict[str, Any]:
    """Time ADiT train steps and sampling (float and int8), score the checkpoint; returns the JSON record."""
    from dit3d.api import MoleculeGenerator

    gen = MoleculeGenerator.from_pretrained(checkpoint)  # a bad name fails before the timings
    repeats = 2 if quick else 5
    batch, grouped = qm9_batch(), qm9_batch(grouped=True)
    pad = lambda b: 1 - b.num_nodes / (b.num_graphs * int(torch.bincount(b.batch).max()))  # noqa: E731
    result: dict[str, Any] = {"batch_molecules": 64, "batch_atoms": int(batch.num_nodes),
                              "padding_fraction": round(pad(batch), 3),
                              "grouped_padding_fraction": round(pad(grouped), 3)}
    result["vae_step_s"] = round(vae_step_time(batch, repeats), 3)
    result |= {k: round(v, 3) for k, v in dit_step_time(batch, repeats).items()}
    result["vae_step_s_grouped"] = round(vae_step_time(grouped, repeats), 3)
    result["dit_step_s_grouped"] = round(dit_step_time(grouped, repeats)["dit_step_s"], 3)
    gen.sample_arrays(8, seed=0)  # warm-up: the int8 timing below comes after a thousand samples
    start = time.perf_counter()
    gen.sample_arrays(100, seed=1)
    result["sample_100_s"] = round(time.perf_counter() - start, 2)
    if gen.sampling.get("autoguidance", 1.0) != 1:  # the same without the guide's calls, side by side
        start = time.perf_counter()
        gen.sample_arrays(100, seed=1, autoguidance=1.0)
        result["sample_100_unguided_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    gen.sample(100, seed=1)
    result["sample_100_mols_s"] = round(time.perf_counter() - start, 2)
    result["sampling"] = gen.sampling
    result |= quality(gen, 200 if quick else 1000)
    gen.quantize_int8()
    start = time.perf_counter()
    gen.sample_arrays(100, seed=1)
    result["sample_100_int8_s"] = round(time.perf_counter() - start, 2)
    int8 = quality(gen, 200 if quick else 1000)
    result["int8"] = {k: int8[k] for k in ("validity", "mol_stability", "uniqueness")} | {"edm": int8["edm"]}
    return result
