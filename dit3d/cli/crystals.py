"""``dit3d evaluate crystals GENERATED --reference REF [--train TRAIN] [--cutoffs ...] [--out res.json]``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

INPUTS = "a folder of .cif files, a .cif file, an .extxyz file or a CDVAE .csv/.csv.gz"


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crystals", help="score generated crystals under the CDVAE / DiffCSP protocol",
        description="Score generated crystals against a reference set (CDVAE / DiffCSP protocol): structural and "
                    "SMACT compositional validity, COV-R / COV-P (CrystalNN + Magpie fingerprints), Wasserstein "
                    "distances of density and number of elements, uniqueness and novelty (StructureMatcher). "
                    "Prints one JSON line. Needs the optional extra: pip install \"dit3d[crystals]\".")
    p.add_argument("generated", help=f"generated crystals: {INPUTS}")
    p.add_argument("--reference", required=True, help=f"reference (test) crystals: {INPUTS}")
    p.add_argument("--train", help=f"training crystals for novelty: {INPUTS}")
    p.add_argument("--cutoffs", choices=("mp20", "perov", "carbon"), default="mp20",
                   help="CDVAE coverage cutoffs (struct/comp): mp20 0.4/10, perov 0.2/4, carbon 0.2/4")
    p.add_argument("--coverage-on", choices=("all", "valid"), default="all",
                   help="generated samples entering coverage: all (CDVAE's code) or only valid ones")
    p.add_argument("--comp-scaler", help='JSON {"means": [...], "stds": [...]} of the 132 Magpie features '
                                         "(default: dit3d's MP-20 statistics)")
    p.add_argument("--cache-dir", help="fingerprint cache folder (default: $DIT3D_CACHE/crystal_fingerprints "
                                       "or ~/.cache/dit3d/crystal_fingerprints)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached fingerprints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", help="also write the JSON line to this file (atomically)")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    from dit3d.fileio import atomic_write
    from dit3d.metrics.crystals_fingerprints import (CompositionScaler, MissingExtraError, check_extras,
                                                     default_cache_dir)
    from dit3d.metrics.crystals_io import load_crystals

    if args.out and not Path(args.out).resolve().parent.is_dir():  # fail before minutes of fingerprints
        raise SystemExit(f"{args.out}: folder {Path(args.out).resolve().parent} does not exist")
    scaler = CompositionScaler.from_json(args.comp_scaler) if args.comp_scaler else None
    try:
        check_extras()  # before reading thousands of CIFs
        from dit3d.metrics.crystals import evaluate_crystals

        sets = {}
        for name in ("generated", "reference", "train"):
            path = getattr(args, name)
            if path is not None:
                sets[name] = load_crystals(path)
                s = sets[name]
                print(f"{name}: {len(s.structures)} structures read from {path}"
                      + (f", {len(s.failures)} unreadable (listed in the result)" if s.failures else ""),
                      file=sys.stderr)
        result = evaluate_crystals(sets["generated"], sets["reference"], sets.get("train"), cutoffs=args.cutoffs,
                                   coverage_on=args.coverage_on, comp_scaler=scaler,
                                   cache_dir=None if args.no_cache else (args.cache_dir or str(default_cache_dir())),
                                   progress=False if args.no_progress else None)
    except MissingExtraError as err:
        raise SystemExit(f"dit3d evaluate crystals: error: {err}") from None
    line = json.dumps(result, default=str)
    print(line)
    if args.out:
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(line + "\n"))
