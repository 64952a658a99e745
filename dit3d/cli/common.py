"""Argument helpers shared by the ``dit3d`` subcommands."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

#: the flow-matching ODE solvers (``dit3d.objectives.flow_matching.SOLVERS``), spelled out so
#: that building the parser imports no torch; a test checks the two agree
SOLVER_CHOICES = ("euler", "heun")
NO_GUIDE = "none"  # `dit3d export --guide none`: drop the folder's stored guide


def positive_int(text: str) -> int:
    """``argparse`` type for counts: ``text`` as an int of at least 1, else an ``ArgumentTypeError``."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_cache_interval_arg(p: argparse.ArgumentParser) -> None:
    """``--cache-interval K`` of the DDPM ``dit3d sample``/``evaluate`` commands (:mod:`dit3d.nn.step_cache`)."""
    p.add_argument("--cache-interval", type=positive_int,
                   help="compute attention and MLP in full every K-th step, reuse them in between (FORA; "
                        "default: the checkpoint's, 1 = every step)")


def add_autoguidance_arg(p: argparse.ArgumentParser) -> None:
    """``--autoguidance W`` of the ``dit3d sample``/``evaluate`` commands (the model's stored guide network)."""
    p.add_argument("--autoguidance", type=float,
                   help="autoguidance scale: extrapolate from the weaker guide network stored with the model "
                        "(Karras et al. 2024; 1: off; default: the checkpoint's)")


def add_int8_arg(p: argparse.ArgumentParser) -> None:
    """``--int8`` of the ``dit3d sample`` commands (the generators' ``quantize_int8``, :mod:`dit3d.nn.quantize`)."""
    p.add_argument("--int8", action="store_true",
                   help="run the trunk's attention and MLP layers in int8 (CPU only; up to ~1.7x faster for "
                        "wide models, no gain for small ones; slightly less accurate)")


def apply_int8(gen: Any, args: argparse.Namespace) -> Any:
    """``gen`` quantized when ``--int8`` was given (CPU only), else unchanged."""
    import torch

    if not getattr(args, "int8", False):
        return gen
    if torch.device(getattr(args, "device", "cpu")).type != "cpu":
        raise SystemExit(f"--int8 runs on the CPU only; drop --int8 or --device {args.device}")
    return gen.quantize_int8()


def add_compile_arg(p: argparse.ArgumentParser) -> None:
    """``--compile`` of the DDPM ``dit3d sample`` commands (the generators' ``compile``, :mod:`dit3d.nn.compiled`)."""
    p.add_argument("--compile", action="store_true",
                   help="compile the network with torch.compile before sampling (the first step compiles: "
                        "seconds to a minute; then ~1.3x faster int8 sampling for DiT-3D-S/4 on two CPU threads; "
                        "needs a C++ compiler on the CPU)")


def apply_compile(gen: Any, args: argparse.Namespace) -> Any:
    """``gen`` compiled when ``--compile`` was given (call after moving it to its device), else unchanged."""
    if not getattr(args, "compile", False):
        return gen
    try:
        return gen.compile()
    except RuntimeError as e:  # no C++ compiler: say so without a traceback
        raise SystemExit(f"--compile: {e}") from None


def add_flow_sampling_args(p: argparse.ArgumentParser) -> None:
    """ODE options shared by ``dit3d sample molecules`` and ``dit3d sample crystals``."""
    p.add_argument("--steps", type=positive_int, help="ODE steps (default: the checkpoint's)")
    p.add_argument("--solver", choices=SOLVER_CHOICES)
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--temperature", type=float, help="scale of the initial noise (default: the checkpoint's); "
                                                     "below 1 trades diversity for validity")
    add_autoguidance_arg(p)
    add_guidance_interval_arg(p)
    add_int8_arg(p)


def add_guidance_interval_arg(p: argparse.ArgumentParser, default: str = "the checkpoint's") -> None:
    """``--autoguidance-interval LO HI`` of the ADiT sample/evaluate/export commands."""
    p.add_argument("--autoguidance-interval", type=float, nargs=2, metavar=("LO", "HI"),
                   help="flow times (0 noise .. 1 data) at which the guide runs; no autoguidance elsewhere "
                        f"(Kynkaanniemi et al. 2024; default: {default})")


def flow_sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ODE options given on the command line (the rest: the checkpoint's defaults)."""
    return sampling_overrides(args, ("steps", "solver", "guidance", "temperature", "autoguidance",
                                     "autoguidance_interval"))


def sampling_overrides(args: argparse.Namespace, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The sampling options given on the command line (``None``: the checkpoint's default),
    among ``keys`` (default: :data:`dit3d.api_ddpm.SAMPLING_OPTIONS`)."""
    from dit3d.api_ddpm import SAMPLING_OPTIONS

    return {k: v for k in keys or SAMPLING_OPTIONS if (v := getattr(args, k, None)) is not None}


def parse_notes(notes: list[str]) -> dict[str, str]:
    """``--note KEY=VALUE`` arguments as a dict; exits with a message on a malformed one."""
    bad = [n for n in notes if "=" not in n]
    if bad:
        raise SystemExit(f"--note takes KEY=VALUE, got {bad}")
    return dict(n.split("=", 1) for n in notes)


def with_notes(provenance: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
    """``provenance`` with the parsed ``--note`` values (:func:`parse_notes`) added; exits on a
    note whose key the export itself records (it would overwrite, e.g., the guide's path)."""
    clash = sorted(set(notes) & set(provenance))
    if clash:
        raise SystemExit(f"--note {', '.join(clash)}: the export records that key itself; choose another name")
    return {**provenance, **notes}


def ddpm_export_sampling(args: argparse.Namespace, **given: Any) -> dict[str, Any]:
    """The sampling defaults ``dit3d export`` was given: ``--sampler``, ``--steps``, ``--eta``
    and the command's own ``given`` options (e.g. ``guidance``), each only where set; the
    rest stay the generator's ``DEFAULT_SAMPLING`` (a checkpoint) or the folder's own (a
    re-export). :func:`ddpm_export` settles the step count with the sampler."""
    opts = {"sampler": args.sampler, "steps": args.steps, "eta": args.eta, **given}
    return {key: value for key, value in opts.items() if value is not None}


def add_ddpm_export_args(p: argparse.ArgumentParser, module: str, generator: str) -> None:
    """The arguments every DDPM ``dit3d export`` takes: checkpoint or folder, ``-o``, ``--sampler``,
    ``--steps``, ``--eta``, ``--note``, ``--guide``, ``--autoguidance`` (``generator``: the
    class whose defaults unset options take)."""
    p.add_argument("checkpoint", help=f"{module} .ckpt from `dit3d fit`, or a {generator} folder (or shipped name) "
                                      "to export again (weights unchanged; its provenance kept under "
                                      "source_provenance)")
    p.add_argument("-o", "--output", required=True, help="pretrained folder to write")
    p.add_argument("--sampler", choices=("ddim", "ddpm"),
                   help=f"default sampler (default: {generator}.DEFAULT_SAMPLING's, ddim; a folder's own)")
    p.add_argument("--steps", type=positive_int,
                   help=f"default DDIM steps (default: {generator}.DEFAULT_SAMPLING's; a folder's own); DDPM "
                        "always runs all T")
    p.add_argument("--eta", type=float,
                   help="default DDIM stochasticity (0: deterministic; 1: DDPM-like noise, more forgiving of "
                        f"an imperfect noise model; default: {generator}.DEFAULT_SAMPLING's; a folder's own)")
    p.add_argument("--note", action="append", default=[], help="KEY=VALUE stored in the provenance (repeatable)")
    p.add_argument("--guide", help=f"store this weaker {module} .ckpt (or {generator} folder) of the same run "
                                   f"(an earlier step) with the model, for autoguidance; '{NO_GUIDE}' drops a "
                                   "folder's guide")
    p.add_argument("--autoguidance", type=float, help="default autoguidance scale (needs a guide; default 1: off; "
                                                      "a folder's own)")


def export_folder(source: str) -> Path | None:
    """The pretrained folder ``source`` names (a path or a shipped name), or ``None`` for a checkpoint file."""
    from dit3d.pretrained import SHIPPED, resolve_pretrained

    return resolve_pretrained(source) if Path(source).is_dir() or source in SHIPPED else None


def _steps_for(sampler: str, gen: Any, sampling: dict[str, Any], given_steps: int | None,
               default_steps: int) -> dict[str, Any]:
    """``sampling`` with the step count settled for the stored ``sampler``: none for DDPM (all
    T; ``--steps`` is an error), and for DDIM in place of a DDPM folder's ``None`` the
    generator's default, at most T."""
    if sampler == "ddpm":
        if given_steps is not None:
            raise SystemExit("--steps applies to --sampler ddim only; DDPM runs all T steps")
        return {**sampling, "steps": None}
    if gen.sampling.get("steps") is None and given_steps is None:
        return {**sampling, "steps": min(default_steps, gen.diffusion.num_timesteps)}
    return sampling


def ddpm_export(args: argparse.Namespace, cls: type, from_checkpoint: Callable[..., tuple[Any, dict[str, Any]]],
                sampling: dict[str, Any], default_steps: int) -> tuple[Any, dict[str, Any]]:
    """The generator and provenance a DDPM ``dit3d export`` saves: from the ``dit3d fit``
    checkpoint ``args.checkpoint`` (``from_checkpoint(path, quiet)`` returns the generator of
    ``cls`` and its provenance) or from a pretrained folder of ``cls`` (its weights unchanged,
    its provenance nested under ``source_provenance``), with the ``sampling`` defaults given
    (:func:`ddpm_export_sampling`; ``default_steps``: the DDIM steps of ``cls``'s defaults),
    ``--guide``, ``--autoguidance`` and ``--note``."""
    notes = parse_notes(args.note)  # a malformed note fails before anything loads
    folder = export_folder(args.checkpoint)
    if folder is not None:
        gen = cls.from_pretrained(folder)  # names the folder in its errors
        stored = json.loads((folder / "config.json").read_text()).get("provenance")
        provenance = {"source_folder": str(args.checkpoint), "source_provenance": stored}
    else:
        gen, provenance = from_checkpoint(args.checkpoint, False)
    sampler = sampling.get("sampler", gen.sampling["sampler"])
    try:
        gen.set_sampling_defaults(**_steps_for(sampler, gen, sampling, args.steps, default_steps))
    except ValueError as e:
        raise ValueError(f"sampling options: {e}") from None

    def load_guide(path: str) -> Any:  # a guide's own provenance is not kept: no warnings about it
        return cls.from_pretrained(path) if export_folder(path) is not None else from_checkpoint(path, True)[0]

    set_export_guide(gen, args, load_guide, provenance)
    return gen, with_notes(provenance, notes)


def set_export_guide(gen: Any, args: argparse.Namespace, load: Any, provenance: dict[str, Any],
                     defaults: dict[str, Any] | None = None) -> Any:
    """Store ``--guide`` (a checkpoint, made a generator by ``load(path)``) in ``gen`` and set
    the ``--autoguidance`` default (``defaults``: further ``set_sampling_defaults`` arguments,
    e.g. an ADiT ``kind``); errors name the option. Records the guide in ``provenance``.
    ``--guide none`` drops a re-exported folder's guide (after the ``--autoguidance``
    default, which must then be 1 wherever the folder's defaults used the guide)."""
    if args.guide == NO_GUIDE:
        _set_autoguidance(gen, args, defaults)
        stored = {"shared": getattr(gen, "shared_sampling", gen.sampling), **getattr(gen, "kind_sampling", {})}
        using = {name: opts["autoguidance"] for name, opts in stored.items() if opts.get("autoguidance", 1.0) != 1}
        if using:
            raise ValueError(f"--guide {NO_GUIDE}: the folder would still sample with autoguidance ("
                             + ", ".join(f"{name} default {scale}" for name, scale in using.items())
                             + "), which needs the guide; add --autoguidance 1 (without --for-kind: it clears every "
                               "kind's)")
        gen.set_guide(None)
        provenance["guide"] = None
        return gen
    if args.guide is not None:
        try:
            gen.set_guide(load(args.guide))
        except FileNotFoundError as e:  # name the option, as for a guide that does not fit
            raise FileNotFoundError(f"--guide {e}") from None
        except ValueError as e:
            raise ValueError(f"--guide {args.guide}: {e}") from None
        provenance["guide"] = str(args.guide)
    return _set_autoguidance(gen, args, defaults)


def _set_autoguidance(gen: Any, args: argparse.Namespace, defaults: dict[str, Any] | None) -> Any:
    if args.autoguidance is not None:
        try:
            gen.set_sampling_defaults(**(defaults or {}), autoguidance=args.autoguidance)
        except ValueError as e:
            raise ValueError(f"--autoguidance: {e}") from None
    return gen


def fit_provenance(checkpoint: str, ckpt: dict[str, Any]) -> dict[str, Any]:
    """Provenance of a folder exported from the ``dit3d fit`` checkpoint at ``checkpoint``
    whose dict ``ckpt`` the module loader has read (``load_lightning_checkpoint``): the path,
    its epoch and step and the data module's settings (``data``)."""
    data = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if not k.startswith("_")}
    return {"checkpoint": str(checkpoint), "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
            "data": data or None}


def report(result: dict[str, Any], out: str | Path | None) -> None:
    """Print ``result`` as one JSON line (what every ``dit3d evaluate`` prints); with ``out``
    also write that line there, atomically."""
    from dit3d.fileio import atomic_output

    line = json.dumps(result, default=str)
    print(line)
    if out:
        with atomic_output(out) as tmp:
            Path(tmp).write_text(line + "\n")


def write_npy(path: str | Path, array: Any) -> None:
    """``np.save`` of ``array`` to ``path``, atomically (no pickled objects)."""
    import numpy as np

    from dit3d.fileio import atomic_output

    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def write_json(path: str | Path, record: dict[str, Any]) -> None:
    """An indented JSON record (a sampling sidecar) to ``path``, atomically."""
    from dit3d.fileio import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
