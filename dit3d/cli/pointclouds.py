"""``dit3d sample pointclouds`` / ``dit3d export pointclouds`` / ``dit3d evaluate pointclouds`` /
``dit3d convert shapes``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dit3d.cli.common import (add_autoguidance_arg, add_cache_interval_arg, add_compile_arg, add_ddpm_export_args,
                              add_int8_arg, apply_compile, apply_int8, ddpm_export, ddpm_export_sampling, positive_int,
                              report, sampling_overrides)

SAMPLE_SUFFIXES = (".npy", ".ply")


def _category(text: str) -> str | int:
    """A label index (``0``), a name (``chair``) or an 8-digit synset id (kept as text)."""
    return int(text) if text.isdigit() and len(text) != 8 else text


def add_sample(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d sample pointclouds``: checkpoint, count, output, points, category and sampling options."""
    p = sub.add_parser("pointclouds", help="sample point clouds to .npy or .ply",
                       description="Draw clouds from a DiT-3D pretrained folder, in the data frame of its training "
                                   "set. .npy holds all clouds as one (n, N, 3) float32 array; .ply holds one cloud, "
                                   "so with -n > 1 one file per cloud is written (-o chair.ply: chair_000.ply, "
                                   "chair_001.ply, ...; all or none: a failure removes those already written).")
    p.add_argument("--checkpoint", default="dit3d-chair-cpu", help="pretrained folder or shipped name")
    p.add_argument("-n", type=positive_int, default=16, help="number of clouds")
    p.add_argument("-o", "--output", required=True, help="output file (.npy, or .ply: one file per cloud)")
    p.add_argument("--num-points", type=positive_int, default=2048, help="points per cloud")
    p.add_argument("--category", type=_category, help="name, synset id or label index (needed if the model "
                                                      "knows several categories)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=("ddim", "ddpm"), help="default: the checkpoint's (ddim)")
    p.add_argument("--steps", type=positive_int, help="DDIM steps (default: the checkpoint's; DDPM runs all T)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (1: none)")
    p.add_argument("--eta", type=float, help="DDIM stochasticity (0: deterministic)")
    p.add_argument("--batch-size", type=positive_int, help="clouds denoised together (default: the checkpoint's)")
    add_cache_interval_arg(p)
    add_autoguidance_arg(p)
    add_int8_arg(p)
    add_compile_arg(p)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_sample)


def ply_paths(out: Path, n: int) -> list[Path]:
    """``out`` itself for one cloud, else ``OUT_000.ply`` ... (at least 3 digits)."""
    if n == 1:
        return [out]
    width = max(3, len(str(n - 1)))
    return [out.with_name(f"{out.stem}_{i:0{width}d}{out.suffix}") for i in range(n)]


def run_sample(args: argparse.Namespace) -> None:
    """Run ``dit3d sample pointclouds``: draw clouds to one ``.npy``, or one ``.ply`` per cloud (all or none)."""
    import time

    from dit3d.api_shapes import ShapeGenerator
    from dit3d.data.pointcloud_io import check_clouds, write_npy, write_ply

    out = Path(args.output)
    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise SystemExit(f"{out}: output must end in .npy or .ply")
    if not out.resolve().parent.is_dir():  # fail before minutes of sampling, not after
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist")
    if out.is_dir():
        raise SystemExit(f"{out}: is a folder; give a file name ending in .npy or .ply")
    gen = apply_compile(apply_int8(ShapeGenerator.from_pretrained(args.checkpoint), args).to(args.device), args)
    options = sampling_overrides(args)
    start = time.perf_counter()
    clouds = gen.sample_arrays(args.n, args.num_points, args.category, args.seed, not args.no_progress, **options)
    if out.suffix.lower() == ".npy":
        write_npy(out, clouds)
        written = [out]
    else:
        check_clouds(clouds, out, batched=True)  # every cloud valid before the first file is written
        written = []
        try:
            for path, cloud in zip(ply_paths(out, args.n), clouds):
                written.append(write_ply(path, cloud))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
    where = out if len(written) == 1 else f"{written[0]} ... {written[-1].name}"
    print(f"wrote {args.n} clouds of {args.num_points} points to {where} in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)


def add_export(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d export pointclouds``: the DDPM export arguments plus default guidance and cache interval."""
    p = sub.add_parser("pointclouds", help="turn a DiT-3D Lightning checkpoint (or folder) into a pretrained folder",
                       description="Store the EMA network, the DDPM schedule, the data normalisation and category "
                                   "names saved by PointCloudDataModule, and default sampling options. Given a "
                                   "pretrained folder instead, export it again: same weights, the options given "
                                   "changed, its provenance under source_provenance.")
    add_ddpm_export_args(p, "DiT3DModule", "ShapeGenerator")
    p.add_argument("--guidance", type=float, help="default classifier-free guidance weight (default 1: none; a "
                                                  "folder's own)")
    p.add_argument("--cache-interval", type=positive_int,
                   help="default reuse interval of attention/MLP outputs while sampling (default 1: none; a "
                        "folder's own)")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    """Run ``dit3d export pointclouds``: save a ``DiT3DModule`` checkpoint (or a shapes folder) as a pretrained
    folder."""
    from dit3d.api_shapes import DEFAULT_SAMPLING, ShapeGenerator, load_dit3d_checkpoint

    def from_checkpoint(path: str, quiet: bool) -> tuple[ShapeGenerator, dict]:
        module, stats = load_dit3d_checkpoint(path)
        if stats is None and not quiet:
            print(f"warning: {path} holds no PointCloudDataModule statistics; samples will stay in the "
                  "training frame", file=sys.stderr)
        return ShapeGenerator.from_lightning(module, stats), {"checkpoint": str(path)}

    sampling = ddpm_export_sampling(args, guidance=args.guidance, cache_interval=args.cache_interval)
    gen, provenance = ddpm_export(args, ShapeGenerator, from_checkpoint, sampling, DEFAULT_SAMPLING["steps"])
    gen.save_pretrained(args.output, extra={"provenance": provenance})
    print(f"wrote {args.output}", file=sys.stderr)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d evaluate pointclouds``: samples, references and the PointFlow protocol options."""
    p = sub.add_parser("pointclouds", help="score generated point clouds against references (PointFlow protocol)",
                       description="MMD, COV and 1-NNA under Chamfer distance and EMD (PointFlow / PVD / LION / "
                                   "DiT-3D definitions); prints one JSON line whose 'protocol' records how.")
    p.add_argument("samples", help="generated clouds, .npy array (M, N, 3)")
    p.add_argument("--reference", required=True, help="reference clouds, .npy array (K, N, 3); same N for EMD")
    p.add_argument("--normalization", choices=("none", "global", "per-shape"), default="none",
                   help="none: both sets as given (the published protocol); global: reference mean and std; "
                        "per-shape: every cloud into the unit ball")
    p.add_argument("--emd", choices=("approx", "exact", "none"), default="approx",
                   help="approx: approxmatch as published (slow on CPU for big sets); exact: optimal matching "
                        "(small clouds); none: Chamfer only")
    p.add_argument("--emd-convention", choices=("pvd", "pointflow"), default="pvd",
                   help="pvd: squared ground cost (PVD, LION, DiT-3D); pointflow: Euclidean (PointFlow)")
    p.add_argument("--batch-size", type=positive_int,
                   help="DiT-3D's per-batch variant: metrics within consecutive batches, averaged (needs M == K)")
    p.add_argument("--seed", type=int, default=0, help="seeds the tie-breaking among equal distances")
    p.add_argument("--device", default="cpu", help="torch device of the distance computations")
    p.add_argument("--progress", action="store_true", help="progress bars over the distance matrices")
    p.add_argument("--renders", type=positive_int, default=4, help="samples (and references) drawn in the PNG")
    p.add_argument("--max-memory", help="refuse to start if the evaluation would need more resident memory than "
                                        "this, e.g. 4G (estimate: dit3d.metrics.evaluation_memory_bytes)")
    p.add_argument("--out", help="also write the JSON here, with a PNG of sample and reference renders beside it "
                                 "(same name, ending _renders.png)")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    """Run ``dit3d evaluate pointclouds``: print MMD/COV/1-NNA as one JSON line (``--out``: a PNG of renders too)."""
    from dit3d.data.pointcloud_io import read_pointclouds, write_renders
    from dit3d.metrics.pointclouds import evaluate_pointclouds

    out = Path(args.out) if args.out else None
    if out is not None and not out.resolve().parent.is_dir():  # fail before minutes of EMD, not after
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist")
    if out is not None and out.is_dir():
        raise SystemExit(f"{out}: is a folder; give a file name for the JSON")
    samples, references = read_pointclouds(args.samples), read_pointclouds(args.reference)
    if args.max_memory:
        _check_memory(args, samples, references)
    result = evaluate_pointclouds(samples, references, emd=None if args.emd == "none" else args.emd,
                                  normalization=args.normalization, seed=args.seed, batch_size=args.batch_size,
                                  progress=args.progress, emd_convention=args.emd_convention, device=args.device)
    result["protocol"]["samples"] = str(args.samples)
    result["protocol"]["references"] = str(args.reference)
    report(result, out)
    if out is None:
        return
    n = args.renders
    shown = list(samples[:n]) + list(references[:n])
    titles = [f"sample {i}" for i in range(min(n, len(samples)))] + [
        f"reference {i}" for i in range(min(n, len(references)))]
    png = out.with_name(out.stem + "_renders.png")
    if write_renders(png, shown, titles, per_row=n) is None:
        print(f"matplotlib is not installed: skipped the renders ({png})", file=sys.stderr)


def _check_memory(args: argparse.Namespace, samples, references) -> None:
    from dit3d.memory import MemoryLimitError, refuse_if_over
    from dit3d.metrics.pointcloud_pairwise import evaluation_memory_bytes

    emd = None if args.emd == "none" else args.emd
    m, k = (len(samples), len(references)) if args.batch_size is None else (args.batch_size, args.batch_size)
    estimate = evaluation_memory_bytes(m, k, samples.shape[1], emd, args.emd_convention)
    try:
        refuse_if_over(estimate, args.max_memory, f"the protocol on {len(samples)} x {len(references)} clouds",
                       "evaluate fewer clouds, use --batch-size, --emd none, or raise --max-memory")
    except MemoryLimitError as e:
        raise SystemExit(f"dit3d evaluate pointclouds: error: {e}") from None


def add_convert(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d convert shapes``: voxel-grid source, PC15k root, category, split and meshing options."""
    p = sub.add_parser("shapes", help="voxel grids (.npy/.npy.gz/.binvox) -> surface point clouds, PC15k layout",
                       description="Mesh each occupancy grid, sample 15,000 surface points (y up, unit bounding-box "
                                   "diagonal, seeded) and write ROOT/<synset>/{train,val,test}/<id>.npy with a "
                                   "conversion.json; see dit3d.data.shapes.")
    p.add_argument("source", help="an .npy/.npy.gz array of grids (S, 1, X, Y, Z), a .binvox file, or a folder of them")
    p.add_argument("-o", "--output", required=True, help="PC15k root folder (created if missing)")
    p.add_argument("--category", default="chair", help="ShapeNet name or synset id; names the folder")
    p.add_argument("--seed", type=int, default=0, help="seeds the points and the split")
    p.add_argument("--split", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"),
                   help="split fractions")
    p.add_argument("--limit", type=positive_int, help="convert only the first LIMIT shapes")
    p.add_argument("--up-axis", choices=("x", "y", "z"),
                   help="the source's up axis (default: z for arrays, as ModelNet; y for binvox, as ShapeNet)")
    p.add_argument("--method", choices=("surface-nets", "marching-cubes"), default="surface-nets",
                   help="meshing: surface-nets (built in) or marching-cubes (needs scikit-image)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ROOT/<synset> folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> None:
    """Run ``dit3d convert shapes``: voxel grids to PC15k surface point clouds; print the split counts."""
    from dit3d.data.shapes import convert_shapes

    try:
        manifest = convert_shapes(args.source, args.output, category=args.category, seed=args.seed,
                                  split=args.split, limit=args.limit, up_axis=args.up_axis, method=args.method,
                                  overwrite=args.overwrite, progress=not args.no_progress)
    except FileExistsError as e:
        raise SystemExit(f"dit3d convert shapes: error: {e}") from None
    c = manifest["counts"]
    print(f"wrote {manifest['num_shapes']} {manifest['category']} clouds ({c['train']} train, {c['val']} val, "
          f"{c['test']} test) to {Path(args.output) / manifest['synset']} in {manifest['seconds']:.1f} s",
          file=sys.stderr)
