"""``dit3d sample crystals``, ``dit3d evaluate crystals GENERATED --reference REF`` and
``dit3d export crystals``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dit3d.cli.common import add_flow_sampling_args, apply_int8, flow_sampling_options, positive_int, report

INPUTS = "a folder of .cif files, a .cif file, an .extxyz file or a CDVAE .csv/.csv.gz"


def add_sample(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d sample crystals``: checkpoint, count, output, space group and sampling options."""
    p = sub.add_parser("crystals", help="sample crystals to extxyz or CIF",
                       description="Sample crystals from an ADiT crystal or joint model. The output is an .extxyz "
                                   "file (all frames), a .cif file (one data block each) or, for a path without "
                                   "suffix, a folder of <i>.cif files. Crystals whose decoded cell is impossible are "
                                   "not written; their number is printed (the CDVAE protocol counts them invalid).")
    p.add_argument("--checkpoint", default="adit-joint-cpu", help="pretrained folder or shipped name")
    p.add_argument("-n", type=positive_int, default=100, help="number of crystals")
    p.add_argument("-o", "--output", required=True, help="output: .extxyz, .cif, or a new folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spacegroup", type=int, help="space group 1..230 (models trained with space groups only)")
    add_flow_sampling_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace) -> None:
    """Run ``dit3d sample crystals``: draw crystals, write those with a possible cell to extxyz/CIF/folder."""
    from dit3d.api_crystals import CrystalGenerator
    from dit3d.chem.crystals import write_cif, write_cif_dir, write_extxyz

    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in ("", ".extxyz", ".cif"):
        raise SystemExit(f"{out}: output must end in .extxyz or .cif, or name a folder (no suffix)")
    if not out.resolve().parent.is_dir():  # fail before minutes of sampling, not after
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist")
    if suffix == "" and out.exists() and not args.overwrite:
        raise SystemExit(f"{out}: exists; choose a new folder or pass --overwrite")
    gen = apply_int8(CrystalGenerator.from_pretrained(args.checkpoint), args)
    options = flow_sampling_options(args)
    start = time.perf_counter()
    result = gen.sample_set(args.n, seed=args.seed, spacegroup=args.spacegroup, progress=not args.no_progress,
                            **options)
    if not result.structures:
        raise SystemExit(f"none of the {args.n} sampled crystals has a possible cell "
                         f"(first: {result.failures[0]['reason']}); nothing written")
    writer = {".extxyz": write_extxyz, ".cif": write_cif}.get(suffix)
    if writer:
        writer(out, result.structures)
    else:
        write_cif_dir(out, result.structures, overwrite=args.overwrite)
    skipped = f"; {len(result.failures)} with impossible cells not written" if result.failures else ""
    print(f"wrote {len(result.structures)} crystals to {out} in {time.perf_counter() - start:.1f} s{skipped}",
          file=sys.stderr)


def add_export(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d export crystals``: the same arguments and exporter as ``dit3d export molecules``."""
    p = sub.add_parser("crystals", help="turn a stage-2 ADiT Lightning checkpoint into a pretrained folder",
                       description="Same as `dit3d export molecules`: the folder's kind (adit-molecules, "
                                   "adit-crystals or adit-joint) follows the systems the model was trained on.")
    from dit3d.cli.molecules import add_export_arguments

    add_export_arguments(p)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d evaluate crystals``: generated/reference/train sets and the CDVAE protocol options."""
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
    """Run ``dit3d evaluate crystals``: read the sets, score them (CDVAE protocol), print one JSON line."""
    from dit3d.metrics.crystals_fingerprints import (CompositionScaler, MissingExtraError, check_extras,
                                                     default_cache_dir)
    from dit3d.metrics.crystals_io import load_crystals

    if args.out and Path(args.out).is_dir():  # fail before the scoring, not after
        raise SystemExit(f"{args.out}: is a folder; give a file name for the JSON")
    if args.out and not Path(args.out).resolve().parent.is_dir():
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
    report(result, args.out)
