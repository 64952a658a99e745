"""``dit3d sample video`` / ``dit3d evaluate video`` / ``dit3d export video``.

- ``sample video``: run one task of a video-DiT pretrained folder (:class:`~dit3d.api_video.VideoGenerator`):
  ``unconditional`` clips from noise, or ``predict``/``backward``/``interpolate``/``complete`` on held-out
  moving-digits clips; to a PNG strip (ground truth over sample, given frames ringed in green), an animated GIF,
  or an ``.npy`` with ``<stem>_known.npy`` (given pixels), ``<stem>_truth.npy`` and ``<stem>_sampling.json``.
- ``evaluate video``: per-task MSE and PSNR of the generated pixels against the ground truth
  (:mod:`dit3d.metrics.video`), beside a copy-the-nearest-given-frame baseline; one JSON line, and with
  ``--out`` a PNG strip per task.
- ``export video``: Lightning checkpoint of :class:`~dit3d.models.VideoDiTModule` -> pretrained folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dit3d.cli.common import add_ddpm_export_args, ddpm_export_steps, fit_provenance, parse_notes, positive_int

SAMPLE_SUFFIXES = (".png", ".gif", ".npy")
TASKS = ("unconditional", "predict", "backward", "interpolate", "complete")
#: where ``dit3d export video`` puts a CPU-trained moving-digits model in the source repository
DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parents[2] / "data" / "video_digits_cpu")


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="video-DiT pretrained folder (from `dit3d export video`; "
                                                      f"default {DEFAULT_CHECKPOINT})")
    p.add_argument("--context", type=positive_int, help="given frames: the first (predict) or last (backward) K, or "
                                                        "K at each end (interpolate); default half (a quarter at "
                                                        "each end)")
    p.add_argument("--start", type=int, default=0, help="first held-out clip to condition on")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial noise and every sampling step")
    p.add_argument("--sampler", choices=("ddim", "ddpm"), help="default: the checkpoint's (ddim)")
    p.add_argument("--steps", type=positive_int, help="DDIM steps (default: the checkpoint's; DDPM runs all T)")
    p.add_argument("--eta", type=float, help="DDIM stochasticity (0: deterministic)")
    p.add_argument("--batch-size", type=positive_int, help="clips denoised together (default: the checkpoint's)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def _generator(args: argparse.Namespace):
    from dit3d.api_video import VideoGenerator

    path = args.checkpoint or DEFAULT_CHECKPOINT
    if args.checkpoint is None and not Path(path).is_dir():
        raise SystemExit(f"no video model at {path}; train one (OMP_NUM_THREADS=1 dit3d fit -c "
                         "configs/video/moving_digits_cpu.yaml), export it (dit3d export video "
                         "runs/video_moving_digits_cpu/checkpoints/last.ckpt -o DIR) and pass --checkpoint DIR")
    return VideoGenerator.from_pretrained(path).to(args.device)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k in ("sampler", "steps", "eta", "batch_size") if (v := getattr(args, k)) is not None}


def _run(gen: Any, task: str, n: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                                          dict[str, Any]]:
    """Run ``task`` on ``n`` clips: samples, given pixels, ground truth (``None`` if unconditional), record."""
    if task == "unconditional" and args.context is not None:
        raise SystemExit("--context applies to conditioned tasks, not unconditional")
    options = _options(args)
    start = time.perf_counter()
    truth = None if task == "unconditional" else gen.test_clips(n, args.start)
    if truth is None:
        clips = gen.sample(n, seed=args.seed, **options)
        known = np.zeros((n, 1, *gen.video_shape[1:]), dtype=bool)
    else:
        clips, known = gen.run_task(task, truth, context_frames=args.context, seed=args.seed, **options)
        known = known.numpy()
    seconds = time.perf_counter() - start
    effective = {**gen.sampling, **options}
    if effective.get("sampler") == "ddpm" and "steps" not in options:
        effective["steps"] = None
    record = {"checkpoint": str(args.checkpoint or DEFAULT_CHECKPOINT), "task": task, "context": args.context,
              "first_clip": args.start, "seed": args.seed, "num_clips": n,
              **{k: effective.get(k) for k in ("sampler", "steps", "eta")}, "device": args.device,
              "seconds": round(seconds, 2)}
    return clips.numpy().astype(np.float32), known, None if truth is None else truth.numpy(), record


def _write(path: Path, array: np.ndarray) -> None:
    from dit3d.fileio import atomic_output

    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    from dit3d.fileio import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def _check_out(out: Path, suffixes: tuple[str, ...]) -> None:
    if out.suffix.lower() not in suffixes:
        raise SystemExit(f"{out}: output must end in {', '.join(suffixes)}")
    if not out.resolve().parent.is_dir():  # fail before sampling, not after
        raise SystemExit(f"{out}: folder {out.resolve().parent} does not exist; create it first")


# --------------------------------------------------------------------------- sample


def add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="generate clips or complete held-out ones, to a PNG strip, GIF or .npy",
                       description="Run one task of a video-DiT pretrained folder (DDIM by default): unconditional "
                                   "clips, or predict (future frames), backward (past frames), interpolate (middle "
                                   "frames) or complete (a central region) on held-out moving-digits clips. .png: a "
                                   "row per clip (ground truth above each sample; given frames ringed in green). "
                                   ".gif: the clips playing side by side. .npy: (n, C, F, H, W) float32 in [-1, 1] "
                                   "with <stem>_known.npy, <stem>_truth.npy and <stem>_sampling.json beside it.")
    p.add_argument("--task", choices=TASKS, default="predict")
    p.add_argument("-n", type=positive_int, default=8, help="number of clips")
    p.add_argument("-o", "--output", required=True, help="output file (.png strip, .gif or .npy)")
    p.add_argument("--scale", type=positive_int, default=3, help="picture pixels per clip pixel")
    _add_sampling_options(p)
    p.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace) -> None:
    from dit3d.api_video import write_gif, write_strip

    out = Path(args.output)
    _check_out(out, SAMPLE_SUFFIXES)
    gen = _generator(args)
    clips, known, truth, record = _run(gen, args.task, args.n, args)
    suffix = out.suffix.lower()
    if suffix == ".png":
        write_strip(out, clips, known, truth, scale=args.scale)
    elif suffix == ".gif":
        write_gif(out, clips, scale=args.scale)
    else:
        _write(out, clips)
        _write(out.with_name(out.stem + "_known.npy"), known)
        if truth is not None:
            _write(out.with_name(out.stem + "_truth.npy"), truth.astype(np.float32))
        _write_json(out.with_name(out.stem + "_sampling.json"), record)
    print(f"wrote {args.n} clips ({args.task}) to {out} in {record['seconds']:.1f} s", file=sys.stderr)


# --------------------------------------------------------------------------- evaluate


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="per-task MSE/PSNR of completed held-out clips against the ground truth",
                       description="For each task, complete -n held-out moving-digits clips (digits the model never "
                                   "saw) and score the generated pixels against the ground truth: MSE and PSNR on "
                                   "the [0, 1] intensity scale (dit3d.metrics.video), beside a baseline that copies "
                                   "the nearest given frame, and (one-digit clips) the share of generated frames "
                                   "the shipped digit classifier reads as the clip's digit. Prints one JSON line.")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=["predict", "interpolate"],
                   help="unconditional clips have no ground truth: they get digit_realism scores against the "
                        "first -n held-out clips, beside the same scores of the next -n held-out clips")
    p.add_argument("-n", type=positive_int, default=64, help="clips per task")
    p.add_argument("--out", help="also write the JSON here, with a PNG strip of the first 4 clips per task beside "
                                 "it (same name, ending _<task>.png)")
    _add_sampling_options(p)
    p.set_defaults(run=run_evaluate)


def _digit_judge(gen: Any, args: argparse.Namespace) -> tuple[Any, np.ndarray] | None:
    """The shipped digit classifier and the digit ``(n,)`` of each evaluated clip, or ``None``
    for clips of several digits or without the classifier (no digit accuracy then)."""
    from dit3d.metrics.images import load_digit_classifier
    from dit3d.pretrained import PretrainedError

    labels = gen.test_labels(args.n, args.start).numpy()  # (n, K)
    if labels.shape[1] != 1:
        return None
    try:
        return load_digit_classifier(), labels[:, 0]
    except PretrainedError as e:
        print(f"warning: no digit accuracy ({e})", file=sys.stderr)
        return None


def _digit_scores(judge: Any, labels: np.ndarray, known: np.ndarray,
                  clips: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"digit_accuracy": {...}}`` of the frames with generated pixels, for each of ``clips``
    (generated, ground truth, copy baseline)."""
    from dit3d.metrics.video import digit_accuracy

    scored = (~known).reshape(*known.shape[:3], -1).any(-1)[:, 0]  # (n, F) frames with generated pixels
    acc = {name: digit_accuracy(x, labels, scored, judge) for name, x in clips.items()}
    judged = (f"{Path(judge.path).name} (test accuracy {judge.info.get('test_accuracy')}) on the 16x16 window "
              "centred on each frame's ink (dit3d.metrics.video.digit_accuracy)")
    return {"digit_accuracy": {**acc, "frames": int(scored.sum()), "judge": judged}}


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


def run_evaluate(args: argparse.Namespace) -> None:
    from dit3d.api_video import write_strip
    from dit3d.metrics.video import copy_baseline, masked_mse_psnr

    out = Path(args.out) if args.out else None
    if out is not None:
        _check_out(out, (".json",))
    gen = _generator(args)
    result: dict[str, Any] = {"tasks": {}}
    records = []
    judge = _digit_judge(gen, args)
    for task in args.tasks:
        clips, known, truth, record = _run(gen, task, args.n, args)
        records.append(record)
        if truth is None:
            result["tasks"][task] = _realism(gen, judge[0] if judge else None, clips, args)
            if out is not None:
                write_strip(out.with_name(f"{out.stem}_{task}.png"), clips[:4], known[:4])
            continue
        frames = known.reshape(*known.shape[:3], -1).all(-1)[:, 0]  # (n, F) wholly given frames
        copied = copy_baseline(truth, frames)
        scores = masked_mse_psnr(clips, truth, ~known)
        base = masked_mse_psnr(copied, truth, ~known)
        result["tasks"][task] = {**scores, "given_frames": frames[0].astype(int).tolist(),
                                 "baseline_copy_nearest_given_frame": {"mse": base["mse"], "psnr": base["psnr"]}}
        if judge is not None:
            result["tasks"][task].update(_digit_scores(*judge, known, {"generated": clips, "ground_truth": truth,
                                                                       "copy_baseline": copied}))
        if out is not None:
            write_strip(out.with_name(f"{out.stem}_{task}.png"), clips[:4], known[:4], truth[:4])
    result["protocol"] = {"metric": "MSE and PSNR (dB) of the generated pixels on the [0, 1] intensity scale, "
                                    "mean over clips (dit3d.metrics.video)",
                          "clips": "held-out moving-digits clips (test split: unseen source digits)",
                          "data": gen.data, "sampling": records}
    line = json.dumps(result)
    print(line)
    if out is not None:
        _write_json(out, result)


# --------------------------------------------------------------------------- export


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="turn a video-DiT Lightning checkpoint into a pretrained folder",
                       description="Store the EMA network, the DDPM schedule, the moving-digits settings of the "
                                   "training data and default sampling options; the provenance records the "
                                   "checkpoint, its epoch and step, the data module's settings and any --note "
                                   "KEY=VALUE.")
    add_ddpm_export_args(p, "VideoDiTModule")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    from dit3d.api_video import VideoGenerator, data_settings, load_video_dit_checkpoint

    notes = parse_notes(args.note)
    steps = ddpm_export_steps(args.sampler, args.steps)
    module = load_video_dit_checkpoint(args.checkpoint)
    provenance = fit_provenance(args.checkpoint, notes)
    gen = VideoGenerator.from_lightning(module, data=data_settings(provenance["data"]),
                                        sampling={"sampler": args.sampler, "steps": steps, "eta": args.eta})
    gen.save_pretrained(args.output, extra={"provenance": provenance})
    print(f"wrote {args.output}", file=sys.stderr)
