"""The ``dit3d`` command.

``dit3d fit|validate|test|predict -c CONFIG`` are Lightning's own subcommands
(LightningCLI): a config names any LightningModule and LightningDataModule by
``class_path`` with their ``init_args``. ``dit3d sample|evaluate|export|convert DOMAIN ...``
generate, score, package models and convert data (``dit3d sample molecules --help``,
``dit3d convert shapes --help``); ``dit3d presets`` lists
the trunk sizes and ``dit3d bench NAME`` runs a benchmark (``python -m dit3d.bench NAME``).
"""
from __future__ import annotations

import argparse
import sys

from dit3d.allocator import retain_freed_memory

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def lightning_main(argv: list[str]) -> None:
    """Hand over to LightningCLI; imported lazily because Lightning takes seconds to load."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    from dit3d.memory import MemoryLimitError

    try:
        LightningCLI(LightningModule, LightningDataModule, subclass_mode_model=True,
                     subclass_mode_data=True, args=argv, save_config_kwargs={"overwrite": True})
    except MemoryLimitError as e:  # MemoryGuard in trainer.callbacks: a message, not a traceback
        raise SystemExit(f"dit3d {argv[0]}: error: {e}") from None


def presets_main() -> None:
    """Run ``dit3d presets``: print each trunk preset's depth, width and number of heads."""
    from dit3d.nn import PRESETS

    for name, cfg in PRESETS.items():
        print(f"{name:10s} depth={cfg['depth']:<3d} width={cfg['hidden_size']:<5d} heads={cfg['num_heads']}")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``dit3d`` parser: Lightning stubs, ``presets``, ``bench`` and the domains of each verb."""
    from dit3d import __version__

    parser = argparse.ArgumentParser(prog="dit3d", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dit3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (see `dit3d {name} --help`)", add_help=False)
    sub.add_parser("presets", help="list the trunk presets")
    from dit3d.cli import crystals, images, molecules, pointclouds, video

    for verb, adders, text in (("sample", [molecules.add_sample, crystals.add_sample, pointclouds.add_sample,
                                           images.add_sample, video.add_sample],
                                "generate samples from a checkpoint"),
                               ("evaluate", [molecules.add_evaluate, pointclouds.add_evaluate, crystals.add_evaluate,
                                             images.add_evaluate, video.add_evaluate],
                                "score generated samples"),
                               ("export", [molecules.add_export, crystals.add_export, pointclouds.add_export,
                                            images.add_export, video.add_export],
                                "Lightning checkpoint -> pretrained folder"),
                               ("convert", [pointclouds.add_convert], "convert source data to a training layout")):
        domains = sub.add_parser(verb, help=text).add_subparsers(dest="domain", metavar="DOMAIN", required=True)
        for add in adders:
            add(domains)
    bench = sub.add_parser("bench", help="run a benchmark and print one JSON line (options: python -m dit3d.bench -h)")
    bench.add_argument("name")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="--quick, --checkpoint, --seeds, --num-samples")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run ``dit3d``: Lightning subcommands go to LightningCLI; the rest run here, errors exit with a message."""
    argv = sys.argv[1:] if argv is None else argv
    retain_freed_memory()  # this process is ours: reuse freed activations (dit3d.allocator)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        lightning_main(argv)
        return
    args = build_parser().parse_args(argv)
    if hasattr(args, "run"):
        from dit3d.chem.io import MoleculeFileError
        from dit3d.pretrained import PretrainedError

        try:
            args.run(args)
        except (MoleculeFileError, PretrainedError, OSError, ValueError) as e:  # OSError: paths, permissions
            raise SystemExit(f"dit3d {args.command} {args.domain}: error: {e}") from None
        except MemoryError as e:
            raise SystemExit(f"dit3d {args.command} {args.domain}: error: out of memory{f' ({e})' if str(e) else ''}; "
                             "ask for fewer samples, fewer points or a smaller batch") from None
    elif args.command == "presets":
        presets_main()
    elif args.command == "bench":
        from dit3d.bench.__main__ import main as bench_main

        bench_main([args.name, *args.options])
    else:
        build_parser().print_help()
        raise SystemExit(2)


if __name__ == "__main__":
    main()
