"""``dit3d sample video`` / ``dit3d evaluate video`` / ``dit3d export video``.

- ``sample video``: run one task of a video-DiT pretrained folder (:class:`~dit3d.api_video.VideoGenerator`):
  ``unconditional`` clips from noise, or ``predict``/``backward``/``interpolate``/``complete`` on held-out
  moving-digits clips; to a PNG strip (ground truth over sample, given frames ringed in green), an animated GIF,
  or an ``.npy`` with ``<stem>_known.npy`` (given pixels), ``<stem>_truth.npy`` and ``<stem>_sampling.json``.
  A class-conditional model (``num_classes: 10``) takes ``--digit D`` and ``--guidance W`` (classifier-free).
- ``evaluate video``: per-task MSE and PSNR of the generated pixels against the ground truth
  (:mod:`dit3d.metrics.video`), beside a copy-the-nearest-given-frame baseline; one JSON line, and with
  ``--out`` a PNG strip per task. For a class-conditional model, ``--digits`` asks unconditional clip ``i``
  for digit ``i % 10`` and scores ``digit_accuracy`` against it; ``--true-digits`` conditions the held-out
  tasks on each clip's own digit (off by default, so the scores compare with unconditional models).
- ``export video``: Lightning checkpoint of :class:`~dit3d.models.VideoDiTModule` -> pretrained folder.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dit3d.cli.common import (add_autoguidance_arg, add_cache_interval_arg, add_compile_arg, add_ddpm_export_args,
                              add_int8_arg, apply_compile, apply_int8, ddpm_export, ddpm_export_sampling,
                              fit_provenance, positive_int, report, sampling_overrides, write_json, write_npy)

SAMPLE_SUFFIXES = (".png", ".gif", ".npy")
TASKS = ("unconditional", "predict", "backward", "interpolate", "complete")
#: where ``dit3d export video`` puts a CPU-trained moving-digits model in the source repository
DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parents[2] / "data" / "video_digits_cpu")


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None,
                   help="video-DiT pretrained folder (from `dit3d export video`) or shipped name (video-digits-cpu, "
                        f"video-digits-cond-cpu: digit-conditional); default {DEFAULT_CHECKPOINT}")
    p.add_argument("--context", type=positive_int, help="given frames: the first (predict) or last (backward) K, or "
                                                        "K at each end (interpolate); default half (a quarter at "
                                                        "each end)")
    p.add_argument("--start", type=int, default=0, help="first held-out clip to condition on")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial noise and every sampling step")
    p.add_argument("--sampler", choices=("ddim", "ddpm"), help="default: the checkpoint's (ddim)")
    p.add_argument("--steps", type=positive_int, help="DDIM steps (default: the checkpoint's; DDPM runs all T)")
    p.add_argument("--eta", type=float, help="DDIM stochasticity (0: deterministic)")
    p.add_argument("--guidance", type=float, help="class-conditional models: classifier-free guidance weight "
                                                  "towards the requested digit (1: none; default: the checkpoint's)")
    p.add_argument("--batch-size", type=positive_int, help="clips denoised together (default: the checkpoint's)")
    add_cache_interval_arg(p)
    add_autoguidance_arg(p)
    add_int8_arg(p)
    add_compile_arg(p)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def _generator(args: argparse.Namespace):
    from dit3d.api_video import VideoGenerator

    path = args.checkpoint or DEFAULT_CHECKPOINT
    if args.checkpoint is None and not Path(path).is_dir():
        raise SystemExit(f"no video model at {path}; train one (OMP_NUM_THREADS=2 dit3d fit -c "
                         "configs/video/moving_digits_cpu.yaml), export it (dit3d export video "
                         "runs/video_moving_digits_cpu/checkpoints/last.ckpt -o DIR --eta 1) and pass --checkpoint DIR")
    return apply_compile(apply_int8(VideoGenerator.from_pretrained(path), args).to(args.device), args)


def _guided(args: argparse.Namespace) -> bool:
    return args.guidance is not None and args.guidance != 1.0


def _check_conditioning(gen: Any, args: argparse.Namespace, digit_flags: str, asks_digits: bool) -> None:
    """Fail before sampling when digits (``asks_digits``, given by ``digit_flags``) or guidance
    are asked of an unconditional model."""
    if gen.num_classes == 0 and (asks_digits or _guided(args)):
        what = digit_flags if asks_digits else "--guidance"
        raise SystemExit(f"{what} needs a class-conditional video model; {args.checkpoint or DEFAULT_CHECKPOINT} "
                         "has no digit labels (num_classes=0). Train one: OMP_NUM_THREADS=2 dit3d fit -c "
                         "configs/video/moving_digits_cond_cpu.yaml")


def _run(gen: Any, task: str, n: int, args: argparse.Namespace, digit: Any = None,
         digits: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Run ``task`` on ``n`` clips: samples, given pixels, ground truth (``None`` if unconditional), record.

    ``digit``: conditional models: the digit of every clip or ``(n,)`` one per clip (``None``:
    any digit); ``digits``: how they were chosen, for the record."""
    if task == "unconditional" and args.context is not None:
        raise SystemExit("--context applies to conditioned tasks, not unconditional")
    options = sampling_overrides(args)
    start = time.perf_counter()
    truth = None if task == "unconditional" else gen.test_clips(n, args.start)
    if truth is None:
        clips = gen.sample(n, seed=args.seed, digit=digit, **options)
        known = np.zeros((n, 1, *gen.video_shape[1:]), dtype=bool)
    else:
        clips, known = gen.run_task(task, truth, context_frames=args.context, seed=args.seed, digit=digit, **options)
        known = known.numpy()
    seconds = time.perf_counter() - start
    effective = {**gen.sampling, **options}
    effective["guidance"] = gen.effective_guidance(effective["guidance"], digit is not None, "guidance" in options)
    if effective.get("sampler") == "ddpm" and "steps" not in options:
        effective["steps"] = None
    record = {"checkpoint": str(args.checkpoint or DEFAULT_CHECKPOINT), "task": task, "context": args.context,
              "first_clip": args.start, "seed": args.seed, "num_clips": n,
              **{k: effective.get(k) for k in ("sampler", "steps", "guidance", "eta", "autoguidance")},
              "digits": digits,
              "device": args.device, "int8": bool(getattr(args, "int8", False)), "seconds": round(seconds, 2)}
    return clips.numpy().astype(np.float32), known, None if truth is None else truth.numpy(), record


def _check_out(out: Path, suffixes: tuple[str, ...]) -> None:
    if out.suffix.lower() not in suffixes:
        raise SystemExit(f"{out}: output must end in {', '.join(suffixes)}")
    if not out.resolve().parent.is_dir():  # fail before sampling, not after
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist; create it first")


# --------------------------------------------------------------------------- sample


def add_sample(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d sample video``: task, count, output (.png, .gif or .npy), digits and sampling options."""
    p = sub.add_parser("video", help="generate clips or complete held-out ones, to a PNG strip, GIF or .npy",
                       description="Run one task of a video-DiT pretrained folder (DDIM by default): unconditional "
                                   "clips, or predict (future frames), backward (past frames), interpolate (middle "
                                   "frames) or complete (a central region) on held-out moving-digits clips. .png: a "
                                   "row per clip (ground truth above each sample; given frames ringed in green). "
                                   ".gif: the clips playing side by side. .npy: (n, C, F, H, W) float32 in [-1, 1] "
                                   "with <stem>_known.npy, <stem>_truth.npy and <stem>_sampling.json beside it. "
                                   "A class-conditional model draws --digit D, guided towards it by --guidance W.")
    p.add_argument("--task", choices=TASKS, default="predict")
    p.add_argument("-n", type=positive_int, default=8, help="number of clips")
    p.add_argument("-o", "--output", required=True, help="output file (.png strip, .gif or .npy)")
    p.add_argument("--scale", type=positive_int, default=3, help="picture pixels per clip pixel")
    p.add_argument("--digit", type=int, nargs="+", metavar="D",
                   help="class-conditional models: the digit to draw (unconditional) or to condition held-out "
                        "clips on, one for all or one per clip (-n of them); guided by --guidance or the "
                        "checkpoint's stored weight; default: any digit")
    _add_sampling_options(p)
    p.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace) -> None:
    """Run ``dit3d sample video``: run one task, write a PNG strip, a GIF, or an ``.npy`` with its sidecars."""
    from dit3d.api_video import write_gif, write_strip

    out = Path(args.output)
    _check_out(out, SAMPLE_SUFFIXES)
    gen = _generator(args)
    _check_conditioning(gen, args, "--digit", args.digit is not None)
    if _guided(args) and args.digit is None:
        raise SystemExit("--guidance needs --digit: the digit to guide towards")
    digit = None if args.digit is None else args.digit[0] if len(args.digit) == 1 else args.digit
    if isinstance(digit, list) and len(digit) != args.n:
        raise SystemExit(f"--digit: give one digit for every clip or exactly -n {args.n} of them, got {len(digit)}")
    clips, known, truth, record = _run(gen, args.task, args.n, args, digit, digit)
    suffix = out.suffix.lower()
    if suffix == ".png":
        write_strip(out, clips, known, truth, scale=args.scale)
    elif suffix == ".gif":
        write_gif(out, clips, scale=args.scale)
    else:
        write_npy(out, clips)
        write_npy(out.with_name(out.stem + "_known.npy"), known)
        if truth is not None:
            write_npy(out.with_name(out.stem + "_truth.npy"), truth.astype(np.float32))
        write_json(out.with_name(out.stem + "_sampling.json"), record)
    said = "" if digit is None else f", digit {digit}" if isinstance(digit, int) else f", digits {digit}"
    print(f"wrote {args.n} clips ({args.task}{said}) to {out} in {record['seconds']:.1f} s", file=sys.stderr)


# --------------------------------------------------------------------------- evaluate


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d evaluate video``: tasks, clips per task, digit options, ``--out`` and sampling options."""
    p = sub.add_parser("video", help="per-task MSE/PSNR of completed held-out clips against the ground truth",
                       description="For each task, complete -n held-out moving-digits clips (digits the model never "
                                   "saw) and score the generated pixels against the ground truth: MSE and PSNR on "
                                   "the [0, 1] intensity scale (dit3d.metrics.video), beside a baseline that copies "
                                   "the nearest given frame, and (one-digit clips) the share of generated frames "
                                   "the shipped digit classifier reads as the clip's digit. A class-conditional "
                                   "model can be asked for digits (--digits, --true-digits) and guided towards "
                                   "them (--guidance). Prints one JSON line.")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=["predict", "interpolate"],
                   help="unconditional clips have no ground truth: they get digit_realism scores against the "
                        "first -n held-out clips, beside the same scores of the next -n held-out clips")
    p.add_argument("-n", type=positive_int, default=64, help="clips per task")
    p.add_argument("--digits", action="store_true",
                   help="class-conditional models, --tasks unconditional: ask clip i for digit i %% 10 (guided "
                        "by --guidance) and add digit_accuracy: the share of its frames the digit classifier "
                        "reads as that digit, beside the same share of real held-out clips")
    p.add_argument("--true-digits", action="store_true",
                   help="class-conditional models, held-out tasks (predict...): condition each clip on its own "
                        "digit; off by default, so the scores compare with unconditional models")
    p.add_argument("--out", help="also write the JSON here, with a PNG strip of the first 4 clips per task beside "
                                 "it (same name, ending _<task>.png)")
    _add_sampling_options(p)
    p.set_defaults(run=run_evaluate)


def _digit_judge(digits: np.ndarray | None) -> tuple[Any, np.ndarray] | None:
    """The shipped digit classifier and the digit ``(n,)`` of each evaluated clip, or ``None``
    for clips of several digits (``digits`` None) or without the classifier (no digit
    accuracy then)."""
    from dit3d.metrics.images import load_digit_classifier
    from dit3d.pretrained import PretrainedError

    if digits is None:
        return None
    try:
        return load_digit_classifier(), digits
    except PretrainedError as e:
        print(f"warning: no digit accuracy ({e})", file=sys.stderr)
        return None


def _judged_by(judge: Any) -> str:
    return (f"{Path(judge.path).name} (test accuracy {judge.info.get('test_accuracy')}) on the 16x16 window "
            "centred on each frame's ink (dit3d.metrics.video.digit_accuracy)")


def _digit_scores(judge: Any, labels: np.ndarray, known: np.ndarray,
                  clips: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"digit_accuracy": {...}}`` of the frames with generated pixels, for each of ``clips``
    (generated, ground truth, copy baseline)."""
    from dit3d.metrics.video import digit_accuracy

    scored = (~known).reshape(*known.shape[:3], -1).any(-1)[:, 0]  # (n, F) frames with generated pixels
    acc = {name: digit_accuracy(x, labels, scored, judge) for name, x in clips.items()}
    return {"digit_accuracy": {**acc, "frames": int(scored.sum()), "judge": _judged_by(judge)}}


def _requested_digit_scores(gen: Any, judge: tuple[Any, np.ndarray] | None, clips: np.ndarray, digits: np.ndarray,
                            args: argparse.Namespace) -> dict[str, Any]:
    """``{"digit_accuracy": {...}}`` of every frame of clips generated from nothing, against the
    ``digits`` ``(n,)`` they were asked for, beside the same score of the real held-out clips
    ``start..start+n`` against their own digits (what the judge makes of real clips); ``None``
    without a judge."""
    from dit3d.metrics.video import digit_accuracy

    if judge is None:
        return {"digit_accuracy": None}
    classifier, labels = judge
    frames = np.ones(clips.shape[:1] + clips.shape[2:3], dtype=bool)  # (n, F): every frame is generated
    real = gen.test_clips(args.n, args.start)
    return {"digit_accuracy": {"generated": digit_accuracy(clips, digits, frames, classifier),
                               "held_out_real": digit_accuracy(real, labels, frames, classifier),
                               "frames": int(frames.sum()), "requested": "clip i asks for digit i % 10",
                               "judge": _judged_by(classifier)}}


def _realism(gen: Any, judge: Any, clips: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """``{"digit_realism": ...}`` of unconditional ``clips`` against held-out clips ``start..start+n``,
    beside the same scores of the real clips ``start+n..start+2n`` (what real data gets); ``None``
    without a judge (clips of several digits, or no classifier)."""
    from dit3d.metrics.video import digit_realism

    if judge is None:
        return {"digit_realism": None}
    reference = gen.test_clips(args.n, args.start)
    held_out = gen.test_clips(args.n, args.start + args.n)
    return {"digit_realism": {"generated": digit_realism(clips, reference, judge),
                              "held_out_real": digit_realism(held_out, reference, judge),
                              "reference": f"held-out clips {args.start}..{args.start + args.n - 1}; held_out_real: "
                                           f"clips {args.start + args.n}..{args.start + 2 * args.n - 1}",
                              "judge": f"{Path(judge.path).name} (dit3d.metrics.video.digit_realism; Frechet "
                                       "distance in the digit classifier's features, not FID)"}}


def _check_evaluate_args(gen: Any, args: argparse.Namespace, held_out: list[str]) -> None:
    """Fail before sampling on flags that do not fit the tasks or the model."""
    if args.digits and "unconditional" not in args.tasks:
        raise SystemExit("--digits applies to --tasks unconditional; use --true-digits for held-out tasks")
    if args.true_digits and not held_out:
        raise SystemExit("--true-digits applies to held-out tasks (predict...); use --digits for unconditional")
    _check_conditioning(gen, args, "--digits/--true-digits", args.digits or args.true_digits)
    if _guided(args) and "unconditional" in args.tasks and not args.digits:
        raise SystemExit("--guidance needs a digit to guide towards: add --digits for --tasks unconditional")
    if _guided(args) and held_out and not args.true_digits:
        raise SystemExit(f"--guidance needs a digit to guide towards: add --true-digits for {', '.join(held_out)}")


def _unconditional_scores(gen: Any, judge: tuple[Any, np.ndarray] | None, args: argparse.Namespace,
                          out: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Digit realism (and, with ``--digits``, accuracy) of ``-n`` clips from nothing, and the sampling record."""
    from dit3d.api_video import write_strip

    digit = np.arange(args.n) % 10 if args.digits else None  # (n,): clip i asks for digit i % 10
    clips, known, _, record = _run(gen, "unconditional", args.n, args, digit, "i % 10" if args.digits else None)
    scores = _realism(gen, judge[0] if judge else None, clips, args)
    if digit is not None:
        scores.update(_requested_digit_scores(gen, judge, clips, digit, args))
    if out is not None:
        write_strip(out.with_name(f"{out.stem}_unconditional.png"), clips[:4], known[:4])
    return scores, record


def _held_out_scores(gen: Any, task: str, judge: tuple[Any, np.ndarray] | None, digit: np.ndarray | None,
                     args: argparse.Namespace, out: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """MSE/PSNR of the generated pixels of ``task`` on held-out clips, beside the copy baseline
    (and digit accuracy with a judge), and the sampling record; ``digit`` ``(n,)``: the digits
    a class-conditional model is told (``--true-digits``), or ``None``."""
    from dit3d.api_video import write_strip
    from dit3d.metrics.video import copy_baseline, masked_mse_psnr

    clips, known, truth, record = _run(gen, task, args.n, args, digit, "true" if args.true_digits else None)
    frames = known.reshape(*known.shape[:3], -1).all(-1)[:, 0]  # (n, F) wholly given frames
    copied = copy_baseline(truth, frames)
    base = masked_mse_psnr(copied, truth, ~known)
    scores = {**masked_mse_psnr(clips, truth, ~known), "given_frames": frames[0].astype(int).tolist(),
              "baseline_copy_nearest_given_frame": {"mse": base["mse"], "psnr": base["psnr"]}}
    if judge is not None:
        scores.update(_digit_scores(*judge, known, {"generated": clips, "ground_truth": truth, "copy_baseline": copied}))
    if out is not None:
        write_strip(out.with_name(f"{out.stem}_{task}.png"), clips[:4], known[:4], truth[:4])
    return scores, record


def _evaluation_protocol(gen: Any, args: argparse.Namespace, records: list[dict[str, Any]]) -> dict[str, Any]:
    digits = None  # what a class-conditional model was told (an unconditional one takes no digits)
    if gen.num_classes:
        digits = {"unconditional": "clip i asks for digit i % 10" if args.digits else "none (any digit)",
                  "held_out_tasks": "each clip's own digit" if args.true_digits else
                                    "none (comparable with unconditional models)"}
    return {"metric": "MSE and PSNR (dB) of the generated pixels on the [0, 1] intensity scale, "
                      "mean over clips (dit3d.metrics.video)",
            "clips": "held-out moving-digits clips (test split: unseen source digits)",
            "data": gen.data, "sampling": records, "digits": digits}


def run_evaluate(args: argparse.Namespace) -> None:
    """Run ``dit3d evaluate video``: score each task, print one JSON line (``--out``: PNG strips per task too)."""
    out = Path(args.out) if args.out else None
    if out is not None:
        _check_out(out, (".json",))
    gen = _generator(args)
    _check_evaluate_args(gen, args, [t for t in args.tasks if t != "unconditional"])
    labels = gen.test_labels(args.n, args.start).numpy()  # (n, K) digits of the held-out clips
    digits = labels[:, 0] if labels.shape[1] == 1 else None  # (n,): one-digit clips only
    if args.true_digits and digits is None:
        raise SystemExit(f"--true-digits needs one-digit clips; these have {labels.shape[1]} digits each")
    judge = _digit_judge(digits)
    told = digits if args.true_digits else None
    result: dict[str, Any] = {"tasks": {}}
    records = []
    for task in args.tasks:
        scores, record = (_unconditional_scores(gen, judge, args, out) if task == "unconditional"
                          else _held_out_scores(gen, task, judge, told, args, out))
        result["tasks"][task] = scores
        records.append(record)
    result["protocol"] = _evaluation_protocol(gen, args, records)
    report(result, out)


# --------------------------------------------------------------------------- export


def add_export(sub: argparse._SubParsersAction) -> None:
    """Register ``dit3d export video``: the DDPM export arguments plus a default ``--guidance``."""
    p = sub.add_parser("video", help="turn a video-DiT Lightning checkpoint (or folder) into a pretrained folder",
                       description="Store the EMA network, the DDPM schedule, the moving-digits settings of the "
                                   "training data and default sampling options; the provenance records the "
                                   "checkpoint, its epoch and step, the data module's settings and any --note "
                                   "KEY=VALUE. Given a pretrained folder instead, export it again: same weights, "
                                   "the options given changed, its provenance under source_provenance.")
    add_ddpm_export_args(p, "VideoDiTModule", "VideoGenerator")
    p.add_argument("--guidance", type=float,
                   help="class-conditional models: default classifier-free guidance weight when a digit is asked "
                        "for (default 1: none; a folder's own; sampling without a digit always uses 1)")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    """Run ``dit3d export video``: save a ``VideoDiTModule`` checkpoint (or a video folder) as a pretrained folder."""
    from dit3d.api_video import DEFAULT_SAMPLING, VideoGenerator, data_settings
    from dit3d.models import VideoDiTModule
    from dit3d.models.checkpoint import load_lightning_checkpoint

    def from_checkpoint(path: str, quiet: bool) -> tuple[VideoGenerator, dict]:
        module, ckpt = load_lightning_checkpoint(path, VideoDiTModule)
        provenance = fit_provenance(path, ckpt)
        return VideoGenerator.from_lightning(module, data=data_settings(provenance["data"])), provenance

    sampling = ddpm_export_sampling(args, guidance=args.guidance)
    gen, provenance = ddpm_export(args, VideoGenerator, from_checkpoint, sampling, DEFAULT_SAMPLING["steps"])
    gen.save_pretrained(args.output, extra={"provenance": provenance})
    print(f"wrote {args.output}", file=sys.stderr)
