"""User-facing generators: load a shipped or trained model and sample from it.

:class:`MoleculeGenerator` (ADiT, RDKit molecules) lives here; :class:`ShapeGenerator`
(DiT-3D point clouds) in :mod:`dit3d.api_shapes`, re-exported here with
:func:`load_dit3d_checkpoint`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem

from dit3d.api_shapes import ShapeGenerator, load_dit3d_checkpoint  # noqa: F401 (re-exported)
from dit3d.models.adit_sampling import decode_atoms, sample_latents
from dit3d.nn import DiT
from dit3d.objectives import FlowMatching
from dit3d.pretrained import (SHIPPED, PretrainedError, load_pretrained, load_state_strict,  # noqa: F401 (re-exported)
                              resolve_pretrained, save_pretrained)
from dit3d.tokenizers.atoms import MOLECULE, AtomAutoencoder

SAMPLING_OPTIONS = ("steps", "solver", "guidance", "batch_size")


class MoleculeGenerator:
    """ADiT molecule sampler: latent DiT + flow matching + the autoencoder's decoder.

    Sampling draws each molecule's atom count from the training histogram, sorts the
    counts so each mini-batch pads little, integrates the flow ODE, decodes latents to
    atom types (argmax) and positions, and perceives bonds with RDKit.

    Example:
        >>> gen = MoleculeGenerator.from_pretrained("adit-qm9-cpu")  # doctest: +SKIP
        >>> mols = gen.sample(10, seed=0)  # doctest: +SKIP
    """

    KIND = "adit-molecules"

    def __init__(self, autoencoder: AtomAutoencoder, dit: DiT, flow: FlowMatching, latent_mean: torch.Tensor,
                 latent_std: torch.Tensor, atom_count_hist: torch.Tensor, sampling: dict[str, Any] | None = None,
                 flow_config: dict[str, Any] | None = None) -> None:
        self.autoencoder, self.dit, self.flow = autoencoder, dit, flow
        self.latent_mean, self.latent_std = latent_mean, latent_std
        self.atom_count_hist = atom_count_hist.cpu()
        self.sampling = {"steps": 100, "solver": "euler", "guidance": 1.0, "batch_size": 256, **(sampling or {})}
        self.flow_config = flow_config or {}

    def to(self, device: str | torch.device) -> MoleculeGenerator:
        """Move the networks and latent statistics to ``device``, e.g. ``"cuda"``."""
        self.autoencoder.to(device)
        self.dit.to(device)
        self.latent_mean, self.latent_std = self.latent_mean.to(device), self.latent_std.to(device)
        return self

    # --------------------------------------------------------------- loading
    @classmethod
    def from_lightning(cls, module, sampling: dict[str, Any] | None = None) -> MoleculeGenerator:
        """From a trained :class:`~dit3d.models.ADiTLatentModule` (its EMA network)."""
        hp = module.hparams
        flow_config = dict(prediction=hp.prediction, self_condition_prob=hp.self_condition_prob)
        return cls(module.autoencoder, module.sampling_dit, module.flow, module.latent_mean.clone(),
                   module.latent_std.clone(), module.atom_count_hist[MOLECULE].clone(), sampling, flow_config)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike) -> MoleculeGenerator:
        """Load a folder written by :meth:`save_pretrained`, or a shipped name."""
        directory = resolve_pretrained(path_or_name)
        config, weights = load_pretrained(directory, cls.KIND)
        part = lambda prefix: {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}  # noqa: E731
        ae = AtomAutoencoder(**config["autoencoder"])
        load_state_strict(ae, part("autoencoder."), str(directory))
        dit = DiT(**config["dit"])
        load_state_strict(dit, part("dit."), str(directory))
        return cls(ae.eval(), dit.eval(), FlowMatching(**config["flow"]), weights["latent_mean"],
                   weights["latent_std"], weights["atom_count_hist"], config.get("sampling"), config["flow"])

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Weights (safetensors) and config (JSON) together; ``extra`` is stored in the config."""
        state = {f"autoencoder.{k}": v for k, v in self.autoencoder.state_dict().items()}
        state |= {f"dit.{k}": v for k, v in self.dit.state_dict().items()}
        state |= {"latent_mean": self.latent_mean, "latent_std": self.latent_std,
                  "atom_count_hist": self.atom_count_hist}
        config = {"autoencoder": self.autoencoder.config, "dit": self.dit.config, "flow": self.flow_config,
                  "sampling": self.sampling}
        clash = set(extra or {}) & (set(config) | {"kind"})
        if clash:
            raise ValueError(f"extra config keys {sorted(clash)} are reserved; choose other names")
        return save_pretrained(directory, self.KIND, config | (extra or {}), state)

    # -------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_arrays(self, n: int, seed: int | None = None, **options: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """``n`` molecules as ``(atomic_numbers (N,), positions (N, 3) Angstrom)`` pairs.

        The same ``seed`` gives the same molecules; ``None`` draws a fresh seed without
        touching torch's global random state. Options override the stored defaults:
        ``steps``, ``solver``, ``guidance``, ``batch_size``.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        unknown = set(options) - set(SAMPLING_OPTIONS)
        if unknown:
            raise ValueError(f"unknown sampling options {sorted(unknown)}; choose from {SAMPLING_OPTIONS}")
        opts = {**self.sampling, **options}
        for key in ("steps", "batch_size"):
            if not isinstance(opts[key], int) or opts[key] < 1:
                raise ValueError(f"{key} must be a positive int, got {opts[key]!r}")
        g = torch.Generator().manual_seed(seed if seed is not None else torch.Generator().seed())
        counts = torch.multinomial(self.atom_count_hist.float(), n, replacement=True, generator=g)  # (n,)
        order = torch.argsort(counts, stable=True)  # similar sizes share a batch: little padding
        results: list[Any] = [None] * n
        self.autoencoder.eval()
        for chunk in order.split(opts["batch_size"]):
            z, mask = sample_latents(self.dit, self.flow, counts[chunk], self.latent_mean, self.latent_std, MOLECULE,
                                     opts["steps"], opts["solver"], opts["guidance"], g)
            types, pos = decode_atoms(self.autoencoder, z, mask, MOLECULE)
            types, pos = types.cpu(), pos.double().cpu()
            for b, i in enumerate(chunk.tolist()):
                k = int(counts[i])
                results[i] = (types[b, :k].numpy(), pos[b, :k].numpy())
        return results

    def sample(self, n: int, seed: int | None = None, **options: Any) -> list[Chem.Mol]:
        """``n`` RDKit Mols with 3D conformers and bonds perceived by RDKit
        (``rdDetermineBonds``). Molecules that cannot be made chemically valid come back
        unsanitised, with whatever bonds could be perceived (connectivity only, or none
        for overlapping atoms); the Mol property ``dit3d_bonds`` says which. Score them
        with :func:`dit3d.metrics.evaluate_molecules`."""
        from dit3d.chem.bonds import BOND_PERCEPTION_PROP, bare_mol, mol_from_coords

        mols = []
        for z, pos in self.sample_arrays(n, seed, **options):
            mol = mol_from_coords(z, pos, method="rdkit")
            if mol is None:  # RDKit could not even place bonds: keep the atoms
                mol = bare_mol(z, pos)
                mol.SetProp(BOND_PERCEPTION_PROP, "none")
            try:
                Chem.SanitizeMol(mol)
            except Exception:  # invalid molecules are returned as they are, for inspection
                pass
            mols.append(mol)
        return mols
