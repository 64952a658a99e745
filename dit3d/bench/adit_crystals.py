"""``python -m dit3d.bench adit-crystals``: joint ADiT step times, crystal sampling speed,
the shipped joint checkpoint's crystal metrics and its molecule non-regression.

- ``joint_step_s``: latent DiT-S, one train step (flow matching with self-conditioning at
  its 50% rate, AdamW) on a mixed batch of 64: 32 real QM9 training molecules + 32 real
  MP-20 development-split training crystals, as the joint configs feed it;
  ``joint_vae_step_s``: the paper-sized autoencoder (8 blocks, 512 wide) on that batch.
- ``sample_100_s``: sample and decode 100 crystals (``sample_arrays``) with the shipped
  checkpoint's defaults.
- crystal metrics of the shipped checkpoint (CDVAE protocol, :func:`~dit3d.metrics.evaluate_crystals`,
  MP-20 cutoffs 0.4 / 10) on ``num_samples`` crystals (seed 0) against a reference of 200
  rows of the MP-20 binary/ternary test split (``eval_sets/mp20bt_test200.csv.gz``, the
  ``mp20-dev`` split's test set; CrystalNN fingerprints of all 7,118 cost about an hour
  here), novelty against the ``mp20-dev`` training crystals. This is NOT the published
  MP-20 protocol (10,000 samples against the full test split): the published rows are
  printed next to ours under ``published_mp20`` for orientation only.
- ``molecules``: QM9 validity (ADiT protocol) and EDM molecule stability of the joint
  checkpoint's molecules next to the molecule-only ``adit-qm9-cpu`` on the same number of
  samples and seed; ``validity_drop`` is molecule-only minus joint (target <= 0.02). Since
  2026-11-27 ``adit-qm9-cpu`` is element-conditioned (compositions drawn from QM9 train), which
  the joint model is not, so the drop also holds that recipe's gain (0.175 -> 0.290).

Data: QM9 from ``qm9pack``; crystals under ``$DIT3D_CRYSTAL_DATA`` or, failing that,
``../shared/data/crystals`` relative to the working directory (this project's layout).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Batch

from dit3d.bench.adit_qm9 import dit_step_time, quality, vae_step_time

#: DiffCSP's MP-20 row (Jiao et al. 2023, Table 2): for orientation, a different split and sample size
PUBLISHED_MP20 = {"model": "DiffCSP", "struct_validity": 1.0, "comp_validity": 0.8325, "cov_recall": 0.9971,
                  "cov_precision": 0.9976, "wdist_density": 0.350, "wdist_num_elements": 0.340}
REFERENCE = "eval_sets/mp20bt_test200.csv.gz"
METRICS = ("struct_validity", "comp_validity", "validity", "cov_recall", "cov_precision", "wdist_density",
           "wdist_num_elements", "uniqueness", "novelty")


def crystal_data_root() -> Path:
    """The crystal data folder (``$DIT3D_CRYSTAL_DATA`` or ``../shared/data/crystals``); exits if missing."""
    root = Path(os.environ.get("DIT3D_CRYSTAL_DATA", "../shared/data/crystals")).expanduser()
    if not (root / "mp_20_pilot").is_dir():
        raise SystemExit(f"adit-crystals needs the CDVAE CSV folders (mp_20_pilot/, mp_20_biternary/, eval_sets/) "
                         f"under {root.resolve()}; set DIT3D_CRYSTAL_DATA to the folder holding them")
    return root


def mixed_batch(root: Path, size: int = 64, seed: int = 0) -> Batch:
    """``size / 2`` random QM9 training molecules + ``size / 2`` random ``mp20-dev`` training
    crystals, collated into one batch of the shared representation."""
    from dit3d.data import QM9, CrystalDataset, dev_split_files, shared_fields

    g = torch.Generator().manual_seed(seed)
    mols = QM9(split="train")
    xtals = CrystalDataset(dev_split_files("mp20-dev", root)["train"], progress=False)
    half = size // 2
    pick = lambda ds: torch.randperm(len(ds), generator=g)[:half].tolist()  # noqa: E731
    return Batch.from_data_list([shared_fields(mols[i]) for i in pick(mols)] +
                                [shared_fields(xtals[i]) for i in pick(xtals)])


def reference_sets(root: Path) -> tuple[Any, Any]:
    """``(reference, train)``: the 200-row MP-20 test reference and the ``mp20-dev`` training
    crystals (novelty), as :class:`~dit3d.metrics.crystals_io.CrystalSet` s."""
    from dit3d.data import dev_split_files
    from dit3d.metrics.crystals_io import CrystalSet, load_crystals

    train = CrystalSet([], [], source="mp20-dev train")
    for path in dev_split_files("mp20-dev", root)["train"]:
        part = load_crystals(path)
        train.structures += part.structures
        train.labels += part.labels
    return load_crystals(root / REFERENCE), train


def crystal_metrics(gen, root: Path, num_samples: int, seed: int = 0, sets: tuple[Any, Any] | None = None
                    ) -> dict[str, Any]:
    """CDVAE metrics of ``num_samples`` crystals from ``gen`` (drawn with ``seed``) against the
    200-row MP-20 reference; ``sets`` reuses :func:`reference_sets` across calls."""
    from dit3d.metrics.crystals import evaluate_crystals
    from dit3d.metrics.crystals_fingerprints import default_cache_dir

    reference, train = sets or reference_sets(root)
    generated = gen.sample_set(num_samples, seed=seed)
    result = evaluate_crystals(generated, reference, train, cutoffs="mp20", cache_dir=str(default_cache_dir()),
                               progress=False)
    out = {k: result[k] for k in METRICS}
    out["impossible_cells"] = len(generated.failures)
    out["protocol"] = {**result["protocol"], "num_samples": num_samples, "seed": seed, "reference": REFERENCE,
                       "train": "mp20-dev train (mp_20_pilot/train + mp_20_biternary/val)",
                       "note": "development split and sample size, not the published MP-20 protocol"}
    return out


def molecule_regression(joint, num_samples: int, baseline: str = "adit-qm9-cpu") -> dict[str, Any]:
    """QM9 validity and stability of the joint model's molecules beside the molecule-only ``baseline``."""
    from dit3d.api import MoleculeGenerator

    ours = quality(joint, num_samples)
    base_gen = MoleculeGenerator.from_pretrained(baseline)
    base = quality(base_gen, num_samples)
    return {"joint_validity": ours["validity"], "joint_mol_stability": ours["mol_stability"],
            "joint_atom_stability": ours["edm"]["atom_stability"], "baseline": baseline,
            "baseline_validity": base["validity"], "baseline_mol_stability": base["mol_stability"],
            "baseline_atom_stability": base["edm"]["atom_stability"],
            "validity_drop": round(base["validity"] - ours["validity"], 4), "num_samples": num_samples,
            "joint_sampling": joint.sampling, "baseline_sampling": base_gen.sampling}  # each kind's own defaults


def run(quick: bool = False, checkpoint: str = "adit-joint-cpu") -> dict[str, Any]:
    """Time joint ADiT train steps and crystal sampling, score crystals and molecules; returns the JSON record."""
    from dit3d.api import CrystalGenerator, MoleculeGenerator

    gen = CrystalGenerator.from_pretrained(checkpoint)  # a bad name fails before the data and timings
    root = crystal_data_root()
    repeats = 2 if quick else 5
    batch = mixed_batch(root)
    result: dict[str, Any] = {"batch_molecules": 32, "batch_crystals": 32, "batch_atoms": int(batch.num_nodes)}
    result["joint_step_s"] = round(dit_step_time(batch, repeats)["dit_step_s"], 3)
    result["joint_vae_step_s"] = round(vae_step_time(batch, repeats), 3)
    start = time.perf_counter()
    gen.sample_arrays(100, seed=1)
    result["sample_100_s"] = round(time.perf_counter() - start, 2)
    result["sampling"] = gen.sampling
    result |= crystal_metrics(gen, root, 100 if quick else 500)
    result["published_mp20"] = PUBLISHED_MP20
    result["molecules"] = molecule_regression(MoleculeGenerator.from_pretrained(checkpoint), 100 if quick else 500)
    return result


def compare(quick: bool = False, checkpoints: Sequence[str] = ("adit-joint-cpu",), seeds: Sequence[int] = (0, 1),
            num_samples: int = 500) -> dict[str, Any]:
    """``python -m dit3d.bench adit-crystals-compare --checkpoint A --checkpoint B --seeds 0 1``:
    crystal metrics of each checkpoint for each seed, side by side on the same reference and
    seeds, with the mean over seeds (metrics move by a few points between seeds at 500
    samples, so one seed cannot rank two models); returns the JSON record."""
    from dit3d.api import CrystalGenerator
    from dit3d.checks import positive_int

    num_samples = 100 if quick else positive_int(num_samples, "num_samples")
    seeds = [int(s) for s in seeds]
    if not seeds or not checkpoints:
        raise ValueError("give at least one checkpoint and one seed")
    gens = {checkpoint: CrystalGenerator.from_pretrained(checkpoint) for checkpoint in checkpoints}  # fail fast
    root = crystal_data_root()
    sets = reference_sets(root)
    models: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    for checkpoint, gen in gens.items():
        runs = {seed: crystal_metrics(gen, root, num_samples, seed, sets) for seed in seeds}
        protocol = {k: v for k, v in next(iter(runs.values()))["protocol"].items() if k != "seed"}
        per_seed = {str(seed): {k: r[k] for k in (*METRICS, "impossible_cells")} for seed, r in runs.items()}
        mean = {k: _mean([r[k] for r in runs.values()]) for k in METRICS}
        models[checkpoint] = {"mean": mean, "per_seed": per_seed, "sampling": gen.sampling}
    return {"models": models, "seeds": seeds, "protocol": protocol, "published_mp20": PUBLISHED_MP20}


def _mean(values: list[float | None]) -> float | None:
    """Mean rounded to 4 places; ``None`` when a run had no value (e.g. nothing valid to be unique)."""
    return None if any(v is None for v in values) else round(sum(values) / len(values), 4)
