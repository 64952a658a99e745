"""ADiT crystal sampling for materials users: pymatgen ``Structure`` s, ASE ``Atoms``, CIF
and extxyz, from a crystal-only or a joint molecule + crystal model."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

from dit3d.api_adit import ADiTGenerator
from dit3d.chem.crystals import CrystalRecord, structure_from_arrays, structure_to_ase
from dit3d.models.adit_sampling import decode_crystals
from dit3d.tokenizers.atoms import CRYSTAL

if TYPE_CHECKING:
    from dit3d.metrics.crystals_io import CrystalSet

__all__ = ["CrystalGenerator"]


class CrystalGenerator(ADiTGenerator):
    """ADiT crystal sampler: latent DiT + flow matching + the autoencoder's crystal decoder.

    Each crystal's atom count is drawn from the training histogram of crystals, the flow
    ODE integrated towards the crystal class (and a space group, for models trained with
    ``spacegroup_conditioning``), and the latents decoded to atom types (argmax),
    fractional coordinates (wrapped into [0, 1)) and lattice lengths and angles
    (:func:`~dit3d.models.adit_sampling.decode_crystals`). Loads folders of kind
    ``adit-crystals`` and ``adit-joint``.

    A decoded lattice can be impossible (a non-positive length, angles that cannot close a
    cell). :meth:`sample_arrays` returns every crystal as decoded; :meth:`sample` drops
    those with impossible cells (with a warning); :meth:`sample_set` keeps them as counted
    failures, which the CDVAE protocol scores as structurally invalid.

    Example:
        >>> gen = CrystalGenerator.from_pretrained("adit-joint-cpu")  # doctest: +SKIP
        >>> structures = gen.sample(10, seed=0)  # doctest: +SKIP
        >>> atoms = gen.to_ase(structures)  # doctest: +SKIP
    """

    KIND = "adit-crystals"
    SYSTEM = CRYSTAL

    @torch.no_grad()
    def sample_arrays(self, n: int, seed: int | None = None, spacegroup: int | None = None, progress: bool = False,
                      **options: Any) -> list[CrystalRecord]:
        """``n`` crystals as decoded, in the shared representation (NumPy, float64).

        Args:
            n: number of crystals.
            seed: the same seed gives the same crystals; ``None`` draws a fresh one
                without touching torch's global random state.
            spacegroup: guide towards this space group (1..230); only for models trained
                with ``spacegroup_conditioning``.
            progress: a progress bar counting crystals.
            **options: override the stored defaults: ``steps``, ``solver``, ``guidance``,
                ``batch_size``, ``temperature`` (scale of the initial noise; below 1 trades
                diversity for validity), ``autoguidance`` (scale; needs a guide) and
                ``autoguidance_interval`` (``[lo, hi]`` flow times at which the guide runs).

        Shapes:
            each record: ``atomic_numbers (N,)``, ``frac_coords (N, 3)``, ``lengths (3,)``
            Angstrom, ``angles (3,)`` degrees.
        """
        batches = self._latent_batches(n, seed, options, spacegroup, progress)  # checks the arguments
        records: list[Any] = [None] * n
        for chunk, counts, z, mask in batches:
            out = {k: v.cpu() for k, v in decode_crystals(self.autoencoder, z, mask).items()}
            for b, (i, k) in enumerate(zip(chunk, counts.tolist())):
                records[i] = CrystalRecord(out["atom_types"][b, :k].numpy(), out["frac_coords"][b, :k].double().numpy(),
                                           out["lengths"][b].double().numpy(), out["angles"][b].double().numpy())
        return records

    def sample_set(self, n: int, seed: int | None = None, spacegroup: int | None = None, progress: bool = False,
                   **options: Any) -> CrystalSet:
        """``n`` crystals as a :class:`~dit3d.metrics.crystals_io.CrystalSet`: the
        structures that could be built, and one failure (index and reason) per impossible
        cell, so :func:`~dit3d.metrics.evaluate_crystals` counts all ``n``."""
        from dit3d.metrics.crystals_io import CrystalSet

        out = CrystalSet([], [], source=f"{type(self).__name__}.sample_set(n={n}, seed={seed})")
        for i, rec in enumerate(self.sample_arrays(n, seed, spacegroup, progress, **options)):
            try:
                out.structures.append(structure_from_arrays(*rec))
                out.labels.append(f"sample {i}")
            except ValueError as err:
                out.failures.append({"where": f"sample {i}", "reason": str(err)})
        return out

    def sample(self, n: int, seed: int | None = None, spacegroup: int | None = None, progress: bool = False,
               **options: Any) -> list:
        """Up to ``n`` pymatgen ``Structure`` s (lattice from its parameters: a along x,
        b in the xy plane); crystals whose decoded cell is impossible are dropped with a
        warning (use :meth:`sample_set` to keep count of them). Arguments as :meth:`sample_arrays`."""
        result = self.sample_set(n, seed, spacegroup, progress, **options)
        if result.failures:
            warnings.warn(f"{len(result.failures)} of {n} sampled crystals had impossible cells and were dropped "
                          f"(first: {result.failures[0]['reason']}); sample_set() keeps count of them", stacklevel=2)
        return result.structures

    @staticmethod
    def to_ase(structures: list) -> list:
        """ASE ``Atoms`` (``pbc=True``, same cell and fractional coordinates) of each structure."""
        return [structure_to_ase(s) for s in structures]
