"""``dit3d sample molecules`` / ``dit3d evaluate molecules`` / ``dit3d export molecules``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dit3d.cli.common import (NO_GUIDE, SOLVER_CHOICES, add_flow_sampling_args, add_guidance_interval_arg, apply_int8,
                              export_folder, flow_sampling_options, parse_notes, positive_int, report,
                              set_export_guide, with_notes)


def add_sample(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d sample molecules``: checkpoint, count, output file and sampling options."""
    p = sub.add_parser("molecules", help="sample molecules to SDF or XYZ")
    p.add_argument("--checkpoint", default="adit-qm9-cpu", help="pretrained folder or shipped name")
    p.add_argument("-n", type=positive_int, default=100, help="number of molecules")
    p.add_argument("-o", "--output", required=True, help="output file (.sdf or .xyz)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_flow_sampling_args(p)
    p.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace) -> None:
    """Run ``dit3d sample molecules``: draw molecules and write them atomically to the SDF/XYZ output."""
    from dit3d.api import MoleculeGenerator
    from dit3d.chem.io import write_sdf, write_xyz

    out = Path(args.output)
    if out.suffix.lower() not in (".sdf", ".xyz"):
        raise SystemExit(f"{out}: output must end in .sdf or .xyz")
    if not out.resolve().parent.is_dir():  # fail before minutes of sampling, not after
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist")
    gen = apply_int8(MoleculeGenerator.from_pretrained(args.checkpoint), args)
    options = flow_sampling_options(args)
    start = time.perf_counter()
    if out.suffix.lower() == ".sdf":
        write_sdf(out, gen.sample(args.n, seed=args.seed, progress=not args.no_progress, **options))
    else:
        write_xyz(out, gen.sample_arrays(args.n, seed=args.seed, progress=not args.no_progress, **options))
    print(f"wrote {args.n} molecules to {out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d evaluate molecules``: input file, protocol, training SMILES and ``--out``."""
    p = sub.add_parser("molecules", help="score an SDF or XYZ file of molecules")
    p.add_argument("path", help="generated molecules (.sdf or .xyz)")
    p.add_argument("--protocol", choices=("edm", "adit"), default="edm")
    p.add_argument("--train-smiles", default="qm9",
                   help="'qm9' (QM9 training split), 'none', or a file with one SMILES per line")
    p.add_argument("--out", help="also write the JSON here, with a PNG grid of 2-D depictions beside it "
                                 "(same name, ending _grid.png)")
    p.set_defaults(run=run_evaluate)


def _train_smiles(spec: str) -> list[str] | None:
    if spec == "none":
        return None
    if spec == "qm9":
        from dit3d.data import qm9_smiles

        return qm9_smiles("train")
    path = Path(spec)
    if not path.is_file():
        raise SystemExit(f"{spec}: no such SMILES file (or use 'qm9' / 'none')")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def run_evaluate(args: argparse.Namespace) -> None:
    """Run ``dit3d evaluate molecules``: score an SDF/XYZ file, print one JSON line (``--out``: a PNG grid too)."""
    from dit3d.chem.io import read_molecules
    from dit3d.metrics import evaluate_molecules

    if args.out and Path(args.out).is_dir():  # fail before the scoring, not after
        raise SystemExit(f"{args.out}: is a folder; give a file name for the JSON")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise SystemExit(f"{args.out}: folder {Path(args.out).resolve().parent} does not exist")
    records = read_molecules(args.path)
    result = evaluate_molecules(records, protocol=args.protocol, train_smiles=_train_smiles(args.train_smiles))
    result["protocol"]["input"] = str(args.path)
    result["protocol"]["train_smiles"] = args.train_smiles
    report(result, args.out)
    if args.out:
        out = Path(args.out)
        depict_grid(records, out.with_name(out.stem + "_grid.png"))


def depict_grid(records, path: Path, count: int = 24) -> None:
    """PNG grid of 2-D depictions of the first ``count`` molecules (heavy atoms)."""
    from rdkit import rdBase
    from rdkit.Chem import Draw

    from dit3d.chem.io import atomic_output

    with rdBase.BlockLogs():  # generated molecules trigger many harmless RDKit warnings
        mols = [_depictable(rec) for rec in records[:count]]
    image = Draw.MolsToGridImage(mols, molsPerRow=6, subImgSize=(200, 200))
    with atomic_output(path) as tmp:
        image.save(str(tmp), format="PNG")


def _depictable(rec):
    from rdkit import Chem

    from dit3d.chem.bonds import mol_from_coords

    mol = mol_from_coords(rec.atomic_numbers, rec.positions)
    try:
        Chem.SanitizeMol(mol)
        mol = Chem.RemoveHs(mol)
    except Exception:  # draw invalid molecules as perceived
        pass
    mol.RemoveAllConformers()
    return mol


def add_export(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d export molecules``: the arguments of :func:`add_export_arguments`."""
    add_export_arguments(sub.add_parser("molecules", help="turn a stage-2 ADiT Lightning checkpoint into a "
                                                          "pretrained folder (molecule, crystal or joint model)"))


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``dit3d export molecules|crystals`` (one exporter for every ADiT model)."""
    p.add_argument("checkpoint", help="ADiTLatentModule .ckpt from `dit3d fit`, or a pretrained ADiT folder to "
                                      "re-export (e.g. with --autoencoder)")
    p.add_argument("-o", "--output", required=True, help="pretrained folder to write")
    p.add_argument("--steps", type=positive_int, help="default ODE steps (a .ckpt: 25; a folder: its own)")
    p.add_argument("--solver", choices=SOLVER_CHOICES, help="default solver (a .ckpt: heun; a folder: its own)")
    p.add_argument("--guidance", type=float, help="default guidance (a .ckpt: 1; a folder: its own)")
    p.add_argument("--temperature", type=float,
                   help="default scale of the initial noise (a .ckpt: 1; a folder: its own)")
    p.add_argument("--guide", help="store this weaker latent DiT of the same latents (a stage-2 .ckpt or ADiT "
                                   "folder, e.g. the same run at an earlier step) with the model, for autoguidance; "
                                   f"'{NO_GUIDE}' drops a folder's guide")
    p.add_argument("--autoguidance", type=float,
                   help="default autoguidance scale (needs --guide or a folder with a guide; a .ckpt: 1, off)")
    add_guidance_interval_arg(p, "a .ckpt: 0 1, everywhere; a folder: its own")
    p.add_argument("--autoencoder", help="decode with this autoencoder (stage-1 .ckpt or folder) instead: one "
                                         "whose decoder was fine-tuned with the model's encoder frozen "
                                         "(configs/adit/joint_decoder_cpu.yaml)")
    p.add_argument("--weights-dtype", choices=("float32", "float16"),
                   help="float16 halves the folder; sampling still computes in float32 (default: float32 for a "
                        ".ckpt, a folder's own)")
    p.add_argument("--for-kind", choices=("molecule", "crystal"),
                   help="a joint model: the sampling options given apply only when it samples this kind (the "
                        "other kind keeps the shared defaults); default: every kind")
    p.add_argument("--note", action="append", default=[], help="KEY=VALUE stored in the config (repeatable)")
    p.set_defaults(run=run_export)


def _export_source(path: str, overrides: dict[str, Any], kind: str | None = None) -> tuple[Any, dict[str, Any], str]:
    """The generator to export, from a stage-2 ``.ckpt`` or a pretrained folder, with the
    sampling ``overrides`` applied (for every kind, or only for ``kind``); the provenance it
    carries (a folder's earlier one) and its weights dtype (a folder's own, else float32)."""
    from dit3d.api import CrystalGenerator, MoleculeGenerator
    from dit3d.api_adit import FOLDER_KINDS, trained_kinds
    from dit3d.models.adit_latent import load_latent_checkpoint
    from dit3d.pretrained import load_pretrained

    folder = export_folder(path)  # a folder or a shipped name
    if folder is not None:
        config, weights = load_pretrained(folder, tuple(FOLDER_KINDS.values()))  # names the folder in its errors
        cls = CrystalGenerator if config["kind"] == "adit-crystals" else MoleculeGenerator
        gen = cls.from_loaded(folder, config, weights).set_sampling_defaults(kind, **overrides)  # bad ones fail here
        provenance = {"source_folder": str(path), "source_provenance": config.get("provenance")}
        return gen, provenance, config.get("weights_dtype", "float32")
    module = load_latent_checkpoint(path)
    kinds = trained_kinds(module.atom_count_hist)
    if not kinds:
        raise SystemExit(f"{path}: its atom-count histograms are empty; was training started?")
    cls = MoleculeGenerator if kinds[0] == 0 else CrystalGenerator  # either saves every trained kind
    return cls.from_lightning(module).set_sampling_defaults(kind, **overrides), {"checkpoint": str(path)}, "float32"


def run_export(args: argparse.Namespace) -> None:
    """Run ``dit3d export molecules|crystals``: save a stage-2 ``.ckpt`` or ADiT folder as a pretrained folder."""
    from dit3d.models.adit_latent import load_autoencoder

    # the sampling defaults given (unset: a .ckpt gets the generator's, a folder keeps its own)
    notes = parse_notes(args.note)  # a malformed note fails before anything loads
    overrides = {k: v for k, v in flow_sampling_options(args).items() if k != "autoguidance"}
    if args.for_kind is not None and not overrides and args.autoguidance is None:
        raise SystemExit("--for-kind applies the sampling options given (--steps, --solver, --guidance, "
                         "--temperature, --autoguidance, --autoguidance-interval) to one kind; none was given")
    gen, provenance, dtype = _export_source(args.checkpoint, overrides, args.for_kind)
    if args.autoencoder is not None:
        try:
            gen.replace_autoencoder(load_autoencoder(args.autoencoder))
        except ValueError as e:
            raise ValueError(f"--autoencoder {args.autoencoder}: {e}") from None  # main adds the command
        provenance["autoencoder"] = str(args.autoencoder)
    set_export_guide(gen, args, lambda path: _export_source(path, {})[0], provenance, {"kind": args.for_kind})
    gen.save_pretrained(args.output, extra={"provenance": with_notes(provenance, notes)},
                        weights_dtype=args.weights_dtype or dtype)
    print(f"wrote {args.output}", file=sys.stderr)
