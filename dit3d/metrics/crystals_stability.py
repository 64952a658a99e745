r"""Extension point for S.U.N. (stable, unique, novel): energies above the convex hull from an ASE calculator.

S.U.N. (Zeni et al. 2025, MatterGen, Nature; used by ADiT, Joshi et al. 2025) is the fraction
of generated crystals that are stable (energy above the hull at most a threshold, e.g. 0.0 or
0.1 eV/atom), unique and novel. The energy is the one thing dit3d cannot provide: published
numbers relax every sample and compute its energy with DFT or a machine-learned interatomic
potential, against a hull of reference phases computed *with the same method*.

:func:`energies_above_hull` does the bookkeeping for any ASE calculator (a MACE, CHGNet,
MatterSim... calculator, or EMT for tests): single-point energies of the structures as given
(relax them first if your protocol does), placed on the hull of ``reference_entries``
(pymatgen ``ComputedEntry`` / ``PDEntry`` with total energies in eV from the same calculator,
including every element's reference phase). Pass the result to
:func:`dit3d.metrics.crystals.evaluate_crystals` as ``e_above_hull``. Nothing here invents an
energy: with no calculator there is no S.U.N. number.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["energies_above_hull", "entries_from_structures"]


def _energy(structure: Any, calculator: Any) -> float:
    from dit3d.chem.crystals import structure_to_ase

    atoms = structure_to_ase(structure)
    atoms.calc = calculator
    return float(atoms.get_potential_energy())


def entries_from_structures(structures: Iterable[Any], calculator: Any) -> list[Any]:
    """``ComputedEntry`` s (total energy in eV from ``calculator``) of reference structures, to
    build the hull with (include the elemental phases).

    Args:
        structures: pymatgen ``Structure`` s.
        calculator: an ASE calculator.
    """
    from pymatgen.entries.computed_entries import ComputedEntry

    return [ComputedEntry(s.composition, _energy(s, calculator)) for s in structures]


def energies_above_hull(structures: Sequence[Any], calculator: Any, reference_entries: Sequence[Any],
                        ) -> np.ndarray:
    """Energy above the hull (eV/atom) of each structure, from single-point energies of ``calculator``.

    Args:
        structures: pymatgen ``Structure`` s (relaxed beforehand if your protocol relaxes).
        calculator: an ASE calculator (``atoms.calc = calculator``).
        reference_entries: pymatgen entries with total energies from the same calculator; the
            hull is built from them (a structure never joins it). They must cover every
            element of the structures.

    Returns:
        ``(N,)`` float64; NaN where the calculator failed. Negative values (below the
        reference hull) are kept.

    Raises:
        ValueError: no reference entries, or an element of a structure lacks a reference phase.
    """
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.entries.computed_entries import ComputedEntry

    entries = list(reference_entries)
    if not entries:
        raise ValueError("no reference entries: build them with entries_from_structures(reference_phases, calculator)")
    covered = {el for e in entries for el in e.composition.elements}
    for i, s in enumerate(structures):
        missing = set(s.composition.elements) - covered
        if missing:
            raise ValueError(f"structure {i} ({s.composition.reduced_formula}) has elements without a reference "
                             f"phase: {sorted(str(m) for m in missing)}; add their elemental entries")
    diagram = PhaseDiagram(entries)
    out = np.full(len(structures), np.nan)
    for i, s in enumerate(structures):
        try:
            entry = ComputedEntry(s.composition, _energy(s, calculator))
        except Exception:  # noqa: BLE001 - a calculator failing on one structure leaves NaN
            continue
        out[i] = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)[1]
    return out
