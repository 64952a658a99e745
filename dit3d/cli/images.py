"""``dit3d sample image`` / ``dit3d evaluate image`` / ``dit3d export image``.

- ``sample image``: draw digits from an image-DiT pretrained folder (:class:`~dit3d.api_images.ImageGenerator`)
  to a PNG grid or an ``.npy`` array; an ``.npy`` gets two siblings, ``<stem>_labels.npy`` (the class of every
  image) and ``<stem>_sampling.json`` (checkpoint, seed, sampler, steps, guidance...), which
  ``evaluate image`` picks up.
- ``evaluate image``: class-conditional accuracy and the Frechet distance in the dit3d digit classifier's
  features (not FID; :mod:`dit3d.metrics.images`) of an ``.npy`` of samples, or of samples drawn on the spot
  (``--checkpoint DIR --per-class K``); one JSON line with a ``protocol`` record.
- ``export image``: Lightning checkpoint of :class:`~dit3d.models.ImageDiTModule` -> pretrained folder.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dit3d.cli.common import (add_autoguidance_arg, add_cache_interval_arg, add_compile_arg, add_ddpm_export_args,
                              add_int8_arg, apply_compile, apply_int8, ddpm_export, ddpm_export_sampling,
                              fit_provenance, positive_int, report, sampling_overrides, write_json, write_npy)

SAMPLE_SUFFIXES = (".png", ".npy")
#: where ``dit3d export image`` put the CPU-trained digits model in the source repository
DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parents[2] / "data" / "digits_dit_cpu")


def _label(text: str) -> str | int:
    """A label index (``3``) or a class name."""
    return int(text) if text.lstrip("-").isdigit() else text


def _add_sampling_options(p: argparse.ArgumentParser,
                          seed_help: str = "seeds the initial noise and every sampling step") -> None:
    p.add_argument("--checkpoint", default=None, help="image-DiT pretrained folder (from `dit3d export image`; "
                                                      f"default {DEFAULT_CHECKPOINT})")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--sampler", choices=("ddim", "ddpm"), help="default: the checkpoint's (ddim)")
    p.add_argument("--steps", type=positive_int, help="DDIM steps (default: the checkpoint's; DDPM runs all T)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (1: none; default: the "
                                                  "checkpoint's)")
    p.add_argument("--eta", type=float, help="DDIM stochasticity (0: deterministic)")
    p.add_argument("--batch-size", type=positive_int, help="images denoised together (default: the checkpoint's)")
    add_cache_interval_arg(p)
    add_autoguidance_arg(p)
    add_int8_arg(p)
    add_compile_arg(p)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def _generator(args: argparse.Namespace):
    from dit3d.api_images import ImageGenerator

    gen = apply_int8(ImageGenerator.from_pretrained(args.checkpoint or DEFAULT_CHECKPOINT), args)
    return apply_compile(gen.to(args.device), args)


def _draw(gen: Any, labels: list[int], args: argparse.Namespace) -> tuple[np.ndarray, dict[str, Any]]:
    """Sample one image per label; return ``(n, C, H, W)`` float32 and the sampling record."""
    options = sampling_overrides(args)
    start = time.perf_counter()
    images = gen.sample(len(labels), label=labels, seed=args.seed, progress=False, **options)
    seconds = time.perf_counter() - start
    effective = {**gen.sampling, **options}
    if effective.get("sampler") == "ddpm" and "steps" not in options:
        effective["steps"] = None
    record = {"checkpoint": str(args.checkpoint or DEFAULT_CHECKPOINT), "seed": args.seed, "num_samples": len(labels),
              **{k: effective.get(k) for k in ("sampler", "steps", "guidance", "eta", "autoguidance")},
              "device": args.device,
              "int8": bool(getattr(args, "int8", False)), "seconds": round(seconds, 2)}
    return images.numpy().astype(np.float32), record


def _balanced_labels(n: int, num_classes: int) -> list[int]:
    """``n`` labels cycling through the classes, sorted (so a grid shows one class after another)."""
    return sorted(i % num_classes for i in range(n)) if num_classes else [0] * n


def write_grid(path: str | Path, images: np.ndarray, per_row: int | None = None, scale: int = 4) -> Path:
    """PNG grid of ``(n, C, H, W)`` images in ``[-1, 1]`` (:func:`~dit3d.api_images.image_grid`),
    each pixel ``scale`` x ``scale``, written atomically."""
    from PIL import Image

    from dit3d.api_images import image_grid
    from dit3d.fileio import atomic_output

    grid = image_grid(images, per_row=per_row)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_output(path) as tmp:
        Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(tmp, format="PNG")
    return Path(path)


def sidecars(samples: str | Path) -> tuple[Path, Path]:
    """``(<stem>_labels.npy, <stem>_sampling.json)`` beside a samples ``.npy``."""
    p = Path(samples)
    return p.with_name(p.stem + "_labels.npy"), p.with_name(p.stem + "_sampling.json")


# --------------------------------------------------------------------------- sample


def add_sample(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d sample image``: count, label, output (.png grid or .npy) and sampling options."""
    p = sub.add_parser("image", help="sample class-conditional images to a PNG grid or .npy",
                       description="Draw images from an image-DiT pretrained folder (guided DDIM by default). "
                                   ".png: one grid, a row after another (--per-row). .npy: an (n, C, H, W) float32 "
                                   "array in [-1, 1], plus <stem>_labels.npy (n,) int64 and <stem>_sampling.json "
                                   "beside it, which `dit3d evaluate image` reads.")
    p.add_argument("-n", type=positive_int, default=100, help="number of images")
    p.add_argument("--label", type=_label, help="class index or name of every image (default: the classes in "
                                                "turn, n/num_classes each, sorted)")
    p.add_argument("-o", "--output", required=True, help="output file (.png grid or .npy array)")
    p.add_argument("--per-row", type=positive_int, help="PNG tiles per row (default: ceil(sqrt(n)))")
    p.add_argument("--scale", type=positive_int, default=4, help="PNG pixels per image pixel")
    _add_sampling_options(p)
    p.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace) -> None:
    """Run ``dit3d sample image``: draw images to a PNG grid, or an ``.npy`` with labels and sampling sidecars."""
    out = Path(args.output)
    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise SystemExit(f"{out}: output must end in .png or .npy")
    if not out.resolve().parent.is_dir():  # fail before sampling, not after
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist; create it first")
    gen = _generator(args)
    labels = ([gen.label_of(args.label)] * args.n if args.label is not None
              else _balanced_labels(args.n, gen.num_classes))
    images, record = _draw(gen, labels, args)
    if out.suffix.lower() == ".png":
        write_grid(out, images, args.per_row, args.scale)
    else:
        labels_path, record_path = sidecars(out)
        write_npy(out, images)
        write_npy(labels_path, np.asarray(labels, dtype=np.int64))
        write_json(record_path, {**record, "class_names": gen.class_names, "labels_file": labels_path.name,
                                  "versions": _versions()})
    print(f"wrote {args.n} images to {out} in {record['seconds']:.1f} s", file=sys.stderr)


# --------------------------------------------------------------------------- evaluate


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d evaluate image``: a samples ``.npy`` or ``--per-class`` sampling, classifier, ``--out``."""
    p = sub.add_parser("image", help="score generated digits: class accuracy, Frechet classifier distance",
                       description="Class-conditional accuracy and the Frechet distance in the dit3d digit "
                                   "classifier's features (NOT FID; dit3d.metrics.images) against the real test "
                                   "digits, with the same metrics for as many real training digits as a floor. "
                                   "Score an .npy of samples (labels from --labels or <stem>_labels.npy), or draw "
                                   "--per-class K samples per class from --checkpoint. Prints one JSON line.")
    p.add_argument("samples", nargs="?", help="generated images, .npy (n, 1, 16, 16) in [-1, 1]")
    p.add_argument("--labels", help="the class of every sample, .npy (n,) ints (default: <stem>_labels.npy)")
    p.add_argument("--per-class", type=positive_int,
                   help="instead of a file: sample this many images per class from --checkpoint")
    p.add_argument("--classifier", help="digit classifier folder (default: the shipped data/digits_classifier)")
    p.add_argument("--out", help="also write the JSON here, with a PNG grid of (up to 100) samples beside it "
                                 "(same name, ending _grid.png)")
    _add_sampling_options(p, "seeds the sampling (--per-class) and the choice of real training digits for the "
                             "real_baseline")
    p.set_defaults(run=run_evaluate)


def _read_npy(path: str | Path, what: str) -> np.ndarray:
    from dit3d.data.pointcloud_io import PointCloudFileError, load_npy

    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"{p}: {what} file does not exist")
    try:
        return load_npy(p, what)  # checks the header against the file size before allocating
    except PointCloudFileError as e:
        raise SystemExit(str(e)) from None


def _check_evaluate_args(args: argparse.Namespace) -> Path | None:
    """Fail before any work on flags that contradict each other; the JSON path (or ``None``)."""
    if (args.samples is None) == (args.per_class is None):
        raise SystemExit("give either a samples .npy or --per-class K (to sample from --checkpoint), not both")
    sampling_flags = [k for k in ("checkpoint", "sampler", "steps", "guidance", "eta", "batch_size",
                                  "cache_interval", "autoguidance") if getattr(args, k, None) is not None]
    if args.samples is not None and sampling_flags:
        raise SystemExit(f"--{sampling_flags[0].replace('_', '-')} applies to --per-class sampling only; the file's "
                         "own sampling record is read from <stem>_sampling.json")
    if args.per_class is not None and args.labels:
        raise SystemExit("--labels applies to a samples file; --per-class draws its own labels")
    out = Path(args.out) if args.out else None
    if out is not None and not out.resolve().parent.is_dir():
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist; create it first")
    if out is not None and out.is_dir():
        raise SystemExit(f"{out}: is a folder; give a file name for the JSON")
    return out


def _read_samples(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, Any, dict[str, str]]:
    """Images, labels, sampling record (``None`` if absent) and source of a samples file and its sidecars."""
    images = _read_npy(args.samples, "samples")
    labels_path, record_path = sidecars(args.samples)
    if args.labels:
        labels_path = Path(args.labels)
    elif not labels_path.is_file():
        raise SystemExit(f"{args.samples}: no labels; pass --labels FILE.npy (or keep {labels_path.name} "
                         "beside the samples, as `dit3d sample image` writes it)")
    labels = _read_npy(labels_path, "labels")
    try:
        sampling = json.loads(record_path.read_text()) if record_path.is_file() else None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise SystemExit(f"{record_path}: not a sampling record ({e}); delete it or regenerate the samples") from None
    return images, labels, sampling, {"samples": str(args.samples), "labels": str(labels_path)}


def _draw_per_class(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, Any, dict[str, str]]:
    """``--per-class`` images of every class from ``--checkpoint``, their labels, sampling record and source."""
    gen = _generator(args)
    labels = np.asarray(_balanced_labels(args.per_class * gen.num_classes, gen.num_classes), dtype=np.int64)
    images, sampling = _draw(gen, labels.tolist(), args)
    return images, labels, sampling, {"samples": f"drawn: {args.per_class} per class"}


def run_evaluate(args: argparse.Namespace) -> None:
    """Run ``dit3d evaluate image``: score read or drawn digits, print one JSON line (``--out``: a PNG grid too)."""
    from dit3d.metrics.images import evaluate_images, load_digit_classifier

    out = _check_evaluate_args(args)
    classifier = load_digit_classifier(args.classifier)
    images, labels, sampling, source = _read_samples(args) if args.samples is not None else _draw_per_class(args)
    result = evaluate_images(images, labels, classifier, seed=args.seed)
    result["protocol"].update(source)
    result["protocol"]["sampling"] = sampling
    report(result, out)
    if out is not None:
        write_grid(out.with_name(out.stem + "_grid.png"), images[:100], per_row=_grid_row(labels[:100]))


def _grid_row(labels: np.ndarray) -> int | None:
    """One class per row when the labels come in equal sorted runs, else a square grid."""
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if len(set(counts.tolist())) == 1 and np.all(np.diff(labels) >= 0):
        return int(counts[0])
    return math.ceil(math.sqrt(len(labels)))


def _versions() -> dict[str, str]:
    import platform

    import torch

    import dit3d

    return {"dit3d": dit3d.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


# --------------------------------------------------------------------------- export


def add_export(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d export image``: the DDPM export arguments plus a default ``--guidance``."""
    p = sub.add_parser("image", help="turn an image-DiT Lightning checkpoint (or folder) into a pretrained folder",
                       description="Store the EMA network, the DDPM schedule, the class names and default sampling "
                                   "options; the provenance records the checkpoint, its epoch and step, the data "
                                   "module's settings and any --note KEY=VALUE. Given a pretrained folder instead, "
                                   "export it again: same weights, the options given changed, its provenance under "
                                   "source_provenance.")
    add_ddpm_export_args(p, "ImageDiTModule", "ImageGenerator")
    p.add_argument("--guidance", type=float, help="default classifier-free guidance scale (default: "
                                                  "ImageGenerator's, 4; a folder's own)")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    """Run ``dit3d export image``: save an ``ImageDiTModule`` checkpoint (or an image folder) as a pretrained folder."""
    from dit3d.api_images import DEFAULT_SAMPLING, ImageGenerator
    from dit3d.models import ImageDiTModule
    from dit3d.models.checkpoint import load_lightning_checkpoint

    def from_checkpoint(path: str, quiet: bool) -> tuple[ImageGenerator, dict]:
        module, ckpt = load_lightning_checkpoint(path, ImageDiTModule)
        return ImageGenerator.from_lightning(module), fit_provenance(path, ckpt)

    sampling = ddpm_export_sampling(args, guidance=args.guidance)
    gen, provenance = ddpm_export(args, ImageGenerator, from_checkpoint, sampling, DEFAULT_SAMPLING["steps"])
    gen.save_pretrained(args.output, extra={"provenance": provenance})
    print(f"wrote {args.output}", file=sys.stderr)
